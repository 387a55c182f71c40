"""Checks every json_pack() call in src/: its format string must name as
many arguments as the call passes, with a string key before every value of
an object. A wrong format makes json_pack return NULL at run time (an
event without its fields, a reference leaked), which no compiler sees.

    python3 tests/lint/json_pack.py      # prints each mismatch; exit 1 if any
"""
import glob
import os
import re
import sys
def split_args(s):
    args=[];depth=0;cur='';i=0;instr=False
    while i<len(s):
        c=s[i]
        if instr:
            cur+=c
            if c=='\\': cur+=s[i+1]; i+=2; continue
            if c=='"': instr=False
        elif c=='"': instr=True; cur+=c
        elif c in '([{': depth+=1; cur+=c
        elif c in ')]}': depth-=1; cur+=c
        elif c==',' and depth==0: args.append(cur.strip()); cur=''
        else: cur+=c
        i+=1
    if cur.strip(): args.append(cur.strip())
    return args
def need(fmt):
    n=0; i=0; stack=[]; expect_key=[]
    ok=True
    while i<len(fmt):
        c=fmt[i]
        if c in ' \t,:': i+=1; continue
        if c=='{': stack.append('{'); expect_key.append(True); i+=1; continue
        if c=='[': stack.append('['); expect_key.append(False); i+=1; continue
        if c in '}]':
            stack.pop(); expect_key.pop(); 
            if expect_key: expect_key[-1]= (stack[-1]=='{') and True if stack else False
            i+=1; 
            if stack and stack[-1]=='{': expect_key[-1]=True
            continue
        if stack and stack[-1]=='{':
            if expect_key[-1]:
                if c!='s': ok=False
                n+=1; expect_key[-1]=False; i+=1; continue
        # value
        if c=='s':
            n+=1
            if i+1<len(fmt) and fmt[i+1] in '?*#%': 
                if fmt[i+1]=='#' or fmt[i+1]=='%': n+=1
                i+=1
        elif c in 'oOifIbn' :
            if c!='n': n+=1
            if i+1<len(fmt) and fmt[i+1] in '?*': i+=1
        else: ok=False
        if stack and stack[-1]=='{': expect_key[-1]=True
        i+=1
    return n, ok
def check(root):
    bad = []
    for f in sorted(glob.glob(os.path.join(root, 'src', '*', '*.c'))):
        s=open(f).read()
        for m in re.finditer(r'json_pack\(', s):
            j=m.end(); depth=1; k=j; instr=False
            while depth>0:
                c=s[k]
                if instr:
                    if c=='\\': k+=2; continue
                    if c=='"': instr=False
                elif c=='"': instr=True
                elif c=='(': depth+=1
                elif c==')': depth-=1
                k+=1
            args=split_args(s[j:k-1])
            fm=args[0]
            parts=re.findall(r'"((?:[^"\\]|\\.)*)"', fm)
            fmt=''.join(parts)
            n,ok=need(fmt)
            line=s[:m.start()].count('\n')+1
            if not ok or n!=len(args)-1:
                bad.append("%s:%d: format %r wants %d arguments, the call passes %d%s"
                       % (f, line, fmt, n, len(args) - 1, "" if ok else " (a value where a key should be)"))
    return bad


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    problems = check(os.path.join(here, "..", ".."))
    print("\n".join(problems) or "json_pack formats: all match")
    sys.exit(1 if problems else 0)
