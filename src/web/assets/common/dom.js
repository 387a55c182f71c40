/* dom.js: the DOM helpers the dashboard and the inspector share:
 * $(id), el(tag, attrs, kids), td(label, content, cls), syncRows(tbody,
 * items, key, make, emptyText, cols), bytes(n), setState(s, text) and
 * showError(msg) (the #conn-state badge and the #error line both pages
 * have), and request(method, path, body, token, onUnauthorized): fetch
 * with the Bearer token, resolving to {ok, status, statusText, json}, or
 * rejecting with an Unauthorized after onUnauthorized() on a 401; as
 * window.mgrokDom.
 * Loaded before each page's app.js. */
(function () {
	"use strict";

	function $(id) { return document.getElementById(id); }

	function el(tag, attrs, kids) {
		var e = document.createElement(tag), k;
		if (attrs) {
			for (k in attrs) {
				if (!Object.prototype.hasOwnProperty.call(attrs, k) ||
				    attrs[k] === null || attrs[k] === undefined)
					continue;
				if (k === "text") e.textContent = String(attrs[k]);
				else if (k === "cls") e.className = attrs[k];
				else e.setAttribute(k, String(attrs[k]));
			}
		}
		(kids || []).forEach(function (c) {
			if (c === null || c === undefined) return;
			e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
		});
		return e;
	}

	function td(label, content, cls) {
		var c = el("td", { "data-label": label, cls: cls || null });
		if (content instanceof Node) c.appendChild(content);
		else c.textContent = content === null || content === undefined ? "" : String(content);
		return c;
	}

	/* syncRows: make tb's rows those of items, in order, reusing the row
	 * of an item whose data did not change (element references stay
	 * valid across refreshes) */
	function syncRows(tb, items, key, make, emptyText, cols) {
		var old = {};
		Array.prototype.slice.call(tb.rows).forEach(function (tr) {
			var k = tr.getAttribute("data-key");
			if (k === null) tb.removeChild(tr);
			else old[k] = tr;
		});
		items.forEach(function (it) {
			var k = String(key(it)), sig = JSON.stringify(it), tr = old[k];
			if (!tr || tr._sig !== sig) {
				var n = make(it);
				n.setAttribute("data-key", k);
				n._sig = sig;
				if (tr) tb.replaceChild(n, tr);
				tr = n;
			}
			delete old[k];
			tb.appendChild(tr);
		});
		Object.keys(old).forEach(function (k) { tb.removeChild(old[k]); });
		if (!items.length)
			tb.appendChild(el("tr", { cls: "empty" }, [el("td", { colspan: cols, text: emptyText })]));
	}

	function bytes(n) {
		if (n === null || n === undefined || isNaN(n)) return "-";
		var u = ["B", "KB", "MB", "GB", "TB"], i = 0;
		n = Number(n);
		while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
		return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 1 : 0)) + " " + u[i];
	}

	function setState(s, text) {
		var b = $("conn-state");
		b.setAttribute("data-state", s);
		b.textContent = text || s;
	}

	function showError(msg) {
		var e = $("error");
		e.textContent = msg || "";
		e.classList.toggle("hidden", !msg);
	}

	function Unauthorized() { this.message = "unauthorized"; }

	function request(method, path, body, token, onUnauthorized) {
		var opts = { method: method, headers: {}, cache: "no-store",
			credentials: "same-origin" };
		if (token) opts.headers.Authorization = "Bearer " + token;
		if (body !== undefined) {
			opts.headers["Content-Type"] = "application/json";
			opts.body = JSON.stringify(body);
		}
		return fetch(path, opts).then(function (r) {
			if (r.status === 401) {
				onUnauthorized();
				throw new Unauthorized();
			}
			return r.text().then(function (t) {
				var j = null;
				try { j = t ? JSON.parse(t) : null; } catch (e) { j = null; }
				return { ok: r.ok, status: r.status, statusText: r.statusText,
					json: j };
			});
		});
	}

	window.mgrokDom = { $: $, el: el, td: td, syncRows: syncRows, bytes: bytes,
		setState: setState, showError: showError, Unauthorized: Unauthorized,
		request: request };
})();
