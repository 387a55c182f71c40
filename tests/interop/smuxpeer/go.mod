module mgrok/tests/interop/smuxpeer

go 1.19

require github.com/xtaci/smux v1.5.16

// Debian's golang-github-xtaci-smux-dev: the build needs no network
// (GOPROXY=off; a directory replacement needs no go.sum entry).
replace github.com/xtaci/smux => /usr/share/gocode/src/github.com/xtaci/smux
