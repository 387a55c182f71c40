/*
 * mgrok inspector (the agent's inspector listener). Plain JS, no
 * framework; works under "default-src 'self'" (no inline script, no eval).
 * Captured data only ever reaches the page through textContent and
 * attributes. The API it uses is docs/api.md (/api/...).
 */
(function () {
	"use strict";

	var TOKEN_KEY = "mgrok-inspect-token";
	var MAX_REQUESTS = 100;
	var POLL_MS = 2000;
	var EVENT_TYPES = ["tunnel_up", "tunnel_down", "session_connected",
		"session_lost", "request", "connection_closed", "reload_applied",
		"reload_refused"];

	var token = null;
	try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { /* none */ }
	var tunnels = [], conns = [];
	var reqs = {}, order = [];          /* id -> entry; ids newest first */
	var selected = null, tab = "headers";
	var views = { request: null, response: null };   /* null: automatic */
	var pending = {}, pendingTimer = null;
	var es = null, retryMs = 1000, started = false, pollTimer = null;
	var timers = {};
	var formBody = null;                /* what the form was prefilled with */

	/* the DOM helpers both pages share (/common/dom.js) */
	var D = window.mgrokDom;
	var $ = D.$, el = D.el, td = D.td, syncRows = D.syncRows, bytes = D.bytes;
	function ms(v) {
		if (v === null || v === undefined) return "-";
		v = Number(v);
		return v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(1) + " ms";
	}
	function clock(t) {
		return t ? new Date(t).toLocaleTimeString([], { hour12: false }) : "-";
	}
	var setState = D.setState, showError = D.showError,
	    Unauthorized = D.Unauthorized;

	/* ---------------------------------------------------------- API */

	function api(method, path, body) {
		return D.request(method, path, body, token, needAuth).then(function (r) {
			if (!r.ok) {
				var err = new Error((r.json && r.json.error) ||
				    (r.status + " " + r.statusText));
				err.status = r.status;
				throw err;
			}
			return r.json;
		});
	}
	function get(path) { return api("GET", path); }

	function needAuth() {
		stopLive();
		$("app").classList.add("hidden");
		$("auth").classList.remove("hidden");
		if (token) $("auth-error").textContent = "That token was refused.";
		token = null;
		try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* none */ }
		setState("signed-out", "signed out");
	}
	function quiet(e) {
		if (e instanceof Unauthorized) return;
		showError(e && e.message ? e.message : String(e));
	}
	function debounce(name, fn, wait) {
		if (timers[name]) return;
		timers[name] = setTimeout(function () { timers[name] = null; fn(); }, wait || 250);
	}

	/* ------------------------------------------------------ tunnels */

	function loadTunnels() {
		return get("/api/tunnels").then(function (j) {
			tunnels = (j && j.tunnels) || [];
			renderTunnels();
		});
	}
	function renderTunnels() {
		syncRows($("tunnels").tBodies[0], tunnels, function (t) { return t.name; }, function (t) {
			var cls = t.status === "online" ? "ok" : t.status === "refused" ? "bad" : "warn";
			var st = el("span", {}, [el("span", { cls: "badge " + cls, text: t.status || "?" })]);
			if (t.error) st.appendChild(el("span", { cls: "err", text: " " + t.error }));
			var pub = t.public_url && /^https?:\/\//i.test(t.public_url) ?
			    el("a", { href: t.public_url, target: "_blank", rel: "noopener noreferrer", text: t.public_url }) :
			    el("span", { cls: "mono", text: t.public_url || "-" });
			var tr = el("tr", { "data-tunnel-name": t.name, "data-status": t.status });
			tr.appendChild(td("Name", el("b", { text: t.name })));
			tr.appendChild(td("Type", t.type));
			tr.appendChild(td("Public URL", pub, "wide"));
			tr.appendChild(td("Local", el("span", { cls: "mono", text: t.local || "-" })));
			tr.appendChild(td("Status", st, "wide"));
			tr.appendChild(td("In", bytes(t.bytes_in), "num"));
			tr.appendChild(td("Out", bytes(t.bytes_out), "num"));
			tr.appendChild(td("Conns", (t.connections_active || 0) + "/" + (t.connections || 0), "num"));
			tr.appendChild(td("Requests", t.requests === undefined ? "-" : t.requests, "num"));
			return tr;
		}, "No tunnels.", 9);
		$("tunnels-count").textContent = String(tunnels.length);
	}

	/* ----------------------------------------------------- requests */

	function addRequests(list) {
		(list || []).forEach(function (r) { if (r && r.id) reqs[r.id] = r; });
		order = Object.keys(reqs);
		order.sort(function (a, b) {
			var d = (reqs[b].start || 0) - (reqs[a].start || 0);
			return d || (b > a ? 1 : b < a ? -1 : 0);
		});
		while (order.length > MAX_REQUESTS) {
			var gone = order.pop();
			if (gone !== selected) delete reqs[gone];
		}
		renderRequests();
	}

	function loadRequests() {
		return get("/api/requests/http?limit=" + MAX_REQUESTS).then(function (j) {
			addRequests((j && j.requests) || []);
		});
	}

	function statusCls(s) { return s ? "s" + String(s).charAt(0) : ""; }

	function renderRequests() {
		var tb = $("requests").tBodies[0];
		syncRows(tb, order.map(function (id) { return reqs[id]; }), function (r) { return r.id; }, function (r) {
			var id = r.id, q = r.request || {}, p = r.response;
			var st = p ? p.status : (r.error ? "error" : "…");
			var size = p && p.body ? p.body.size : null;
			var tr = el("tr", { cls: "clickable",
				"data-request-id": id, "data-status": p ? p.status : "",
				"data-method": q.method || "", "data-tunnel": r.tunnel || "" });
			tr.appendChild(td("Time", clock(r.start)));
			tr.appendChild(td("Tunnel", r.tunnel));
			tr.appendChild(td("Method", el("b", { cls: "method", text: q.method || "?" })));
			var u = td("URI", el("span", { cls: "mono", text: q.uri || "" }), "uri wide");
			u.title = q.uri || "";
			if (r.replay_of) u.appendChild(el("span", { cls: "badge", text: "replay" }));
			tr.appendChild(u);
			tr.appendChild(td("Status", el("span", { cls: "status " + statusCls(p && p.status), text: st }), "num"));
			tr.appendChild(td("Duration", ms(r.duration_ms), "num"));
			tr.appendChild(td("Size", size === null ? "-" : bytes(size), "num"));
			tr.addEventListener("click", function () { select(id); });
			return tr;
		}, "No requests yet.", 7);
		Array.prototype.forEach.call(tb.rows, function (tr) {
			tr.classList.toggle("sel", !!selected && tr.getAttribute("data-request-id") === selected);
		});
		$("requests-count").textContent = String(order.length);
		$("count-requests").textContent = String(order.length);
	}

	/* a "request" event: fetch the entry (a burst, such as the kept events
	 * a new stream starts with, reloads the list once instead) */
	function onRequestEvent(ev) {
		var id = ev.id;
		if (!id || reqs[id]) return;
		if (order.length >= MAX_REQUESTS && ev.time &&
		    ev.time < (reqs[order[order.length - 1]].start || 0))
			return;
		pending[id] = true;
		if (pendingTimer) return;
		pendingTimer = setTimeout(function () {
			var ids = Object.keys(pending);
			pending = {}; pendingTimer = null;
			if (ids.length > 4) { loadRequests().catch(quiet); return; }
			ids.forEach(function (i) {
				if (reqs[i]) return;
				get("/api/requests/http/" + encodeURIComponent(i)).then(function (r) {
					if (r) addRequests([r.request && r.id ? r : (r.requests || [])[0]]);
				}, function (e) { if (e.status !== 404) quiet(e); });
			});
		}, 100);
	}

	/* ------------------------------------------------------- detail */

	function b64bytes(s) {
		var bin;
		try { bin = atob(s || ""); } catch (e) { return new Uint8Array(0); }
		var a = new Uint8Array(bin.length), i;
		for (i = 0; i < bin.length; i++) a[i] = bin.charCodeAt(i);
		return a;
	}
	function utf8(a) {
		try { return { text: new TextDecoder("utf-8", { fatal: true }).decode(a), ok: true }; }
		catch (e) { return { text: new TextDecoder("utf-8").decode(a), ok: false }; }
	}
	function hexdump(a) {
		var out = [], i, j, h, s;
		for (i = 0; i < a.length; i += 16) {
			h = ""; s = "";
			for (j = 0; j < 16; j++) {
				if (i + j < a.length) {
					h += (a[i + j] < 16 ? "0" : "") + a[i + j].toString(16) + " ";
					s += a[i + j] >= 32 && a[i + j] < 127 ? String.fromCharCode(a[i + j]) : ".";
				} else {
					h += "   ";
				}
				if (j === 7) h += " ";
			}
			out.push(("0000000" + i.toString(16)).slice(-8) + "  " + h + " |" + s + "|");
		}
		return out.join("\n");
	}
	function header(hs, name) {
		var v = null;
		(hs || []).forEach(function (h) {
			if (v === null && String(h[0]).toLowerCase() === name) v = String(h[1]);
		});
		return v;
	}

	function renderHeaders(tableId, hs) {
		var tb = $(tableId).tBodies[0];
		tb.textContent = "";
		(hs || []).forEach(function (h) {
			tb.appendChild(el("tr", {}, [el("td", { text: h[0] }), el("td", { text: h[1] })]));
		});
		if (!hs || !hs.length)
			tb.appendChild(el("tr", { cls: "empty" }, [el("td", { colspan: 2, text: "none" })]));
	}

	function renderBody(boxId, which, part) {
		var box = $(boxId);
		box.textContent = "";
		if (!part) {
			box.appendChild(el("p", { cls: "muted", text: which === "response" ? "No response." : "No request." }));
			return;
		}
		var b = part.body || { size: 0, captured: 0, truncated: false, base64: "" };
		var a = b64bytes(b.base64), u = utf8(a), j = null;
		try { j = u.ok && u.text ? JSON.stringify(JSON.parse(u.text), null, 2) : null; } catch (e) { j = null; }
		var view = views[which];
		if (!view) view = j !== null ? "json" : u.ok ? "text" : "hex";
		var bar = el("div", { cls: "tabs views" });
		["text", "json", "hex"].forEach(function (v) {
			var btn = el("button", { type: "button", "data-view": v, cls: v === view ? "active" : null,
				text: v === "json" ? "JSON" : v === "hex" ? "Hex" : "Text" });
			btn.addEventListener("click", function () { views[which] = v; renderBody(boxId, which, part); });
			bar.appendChild(btn);
		});
		box.appendChild(bar);
		var meta = el("p", { cls: "note" }, [
			bytes(b.size) + (b.captured !== b.size ? ", " + bytes(b.captured) + " captured" : "") +
			(header(part.headers, "content-type") ? " · " + header(part.headers, "content-type") : "")
		]);
		if (b.truncated)
			meta.appendChild(el("span", { cls: "badge warn truncated", text: "truncated" }));
		box.appendChild(meta);
		var pre;
		if (!a.length) {
			pre = el("pre", { cls: "body", "data-view": view, text: "(empty)" });
		} else if (view === "hex") {
			pre = el("pre", { cls: "body hex", "data-view": view, text: hexdump(a) });
		} else if (view === "json") {
			pre = el("pre", { cls: "body", "data-view": view, text: j !== null ? j : "(not JSON)\n\n" + u.text });
		} else {
			pre = el("pre", { cls: "body", "data-view": view,
				text: (u.ok ? "" : "(not valid UTF-8)\n\n") + u.text });
		}
		box.appendChild(pre);
	}

	function showTab(t) {
		tab = t;
		Array.prototype.forEach.call(document.querySelectorAll("#detail-tabs button"), function (b) {
			b.classList.toggle("active", b.getAttribute("data-tab") === t);
		});
		Array.prototype.forEach.call(document.querySelectorAll("#request-detail .tab"), function (d) {
			d.classList.toggle("hidden", d.getAttribute("data-tab") !== t);
		});
	}

	function select(id) {
		selected = id;
		views = { request: null, response: null };
		$("replay-status").textContent = "";
		Array.prototype.forEach.call($("requests").tBodies[0].rows, function (tr) {
			tr.classList.toggle("sel", tr.getAttribute("data-request-id") === id);
		});
		renderDetail();
		fillForm();
		if (window.matchMedia && window.matchMedia("(max-width: 700px)").matches)
			$("request-detail").scrollIntoView({ behavior: "smooth", block: "start" });
	}

	function renderDetail() {
		var r = selected ? reqs[selected] : null, d = $("request-detail");
		d.setAttribute("data-request-id", r ? r.id : "");
		$("detail-empty").classList.toggle("hidden", !!r);
		$("detail-body").classList.toggle("hidden", !r);
		$("replay").disabled = !r;
		$("detail-id").textContent = r ? r.id : "";
		if (!r) return;
		var q = r.request || {}, p = r.response;
		$("d-method").textContent = q.method || "";
		$("d-uri").textContent = q.uri || "";
		$("d-proto").textContent = q.proto || "";
		var st = $("d-status");
		st.textContent = p ? p.status + " " + (p.reason || "") : (r.error ? "no response" : "in flight");
		st.className = statusCls(p && p.status);
		$("d-duration").textContent = ms(r.duration_ms);
		$("d-time").textContent = r.start ? new Date(r.start).toLocaleString() : "-";
		$("d-tunnel").textContent = r.tunnel || "-";
		$("d-remote").textContent = r.remote_addr || "-";
		Array.prototype.forEach.call(d.querySelectorAll(".replay-of"), function (x) {
			x.classList.toggle("hidden", !r.replay_of);
		});
		$("d-replay-of").textContent = r.replay_of || "";
		$("d-replay-of").setAttribute("data-request-id", r.replay_of || "");
		Array.prototype.forEach.call(d.querySelectorAll(".d-error"), function (x) {
			x.classList.toggle("hidden", !r.error);
		});
		$("d-error").textContent = r.error || "";
		renderHeaders("req-headers", q.headers);
		renderHeaders("resp-headers", p ? p.headers : []);
		renderBody("req-body", "request", r.request);
		renderBody("resp-body", "response", p);
		showTab(tab);
	}

	/* ------------------------------------------------------- replay */

	function fillForm() {
		var r = selected ? reqs[selected] : null;
		if (!r) return;
		var q = r.request || {}, b = q.body || {};
		var a = b64bytes(b.base64), u = utf8(a), notes = [];
		$("rf-method").value = q.method || "GET";
		$("rf-uri").value = q.uri || "/";
		$("rf-headers").value = (q.headers || []).map(function (h) {
			return h[0] + ": " + h[1];
		}).join("\n");
		$("rf-body").value = u.ok ? u.text : "";
		formBody = { text: $("rf-body").value, base64: b.base64 || "", binary: !u.ok && a.length > 0 };
		if (formBody.binary) notes.push("The body is binary: it is sent as captured unless you type a new one.");
		if (b.truncated) notes.push("The captured body was truncated: only the captured part is sent.");
		if ((q.headers || []).some(function (h) { return h[1] === "[redacted]"; }))
			notes.push("Redacted headers are dropped unless you type their values.");
		$("rf-note").textContent = notes.join(" ");
	}

	function utf8len(s) { return new TextEncoder().encode(s).length; }

	function replayDone(p) {
		return p.then(function (entry) {
			var st = $("replay-status");
			st.textContent = "";
			if (entry && entry.id) {
				addRequests([entry]);
				var a = el("a", { href: "#", id: "replay-result", "data-request-id": entry.id, text: entry.id });
				a.addEventListener("click", function (e) { e.preventDefault(); select(entry.id); });
				st.appendChild(document.createTextNode("Replayed as "));
				st.appendChild(a);
				st.appendChild(document.createTextNode(entry.response ?
				    " → " + entry.response.status + " " + (entry.response.reason || "") :
				    entry.error ? ": " + entry.error : ""));
			} else {
				st.textContent = "Replayed.";
			}
			st.className = "note ok";
		}, function (e) {
			if (e instanceof Unauthorized) return;
			var st = $("replay-status");
			st.textContent = "Replay failed: " + (e && e.message ? e.message : e);
			st.className = "note err";
		});
	}

	function replay() {
		if (!selected) return;
		$("replay-status").textContent = "Replaying…";
		replayDone(api("POST", "/api/requests/http", { id: selected }));
	}

	function sendForm(e) {
		e.preventDefault();
		if (!selected) return;
		var body = { id: selected, method: $("rf-method").value.trim() || "GET",
			uri: $("rf-uri").value.trim() || "/" };
		var text = $("rf-body").value, hs = [], len;
		if (formBody && formBody.binary && text === formBody.text) {
			body.body_base64 = formBody.base64;
			len = b64bytes(formBody.base64).length;
		} else {
			body.body = text;
			len = utf8len(text);
		}
		$("rf-headers").value.split(/\r?\n/).forEach(function (line) {
			var i = line.indexOf(":");
			if (i <= 0) return;
			var n = line.slice(0, i).trim(), v = line.slice(i + 1).trim();
			if (!n || v === "[redacted]") return;
			if (n.toLowerCase() === "content-length") v = String(len);
			hs.push([n, v]);
		});
		body.headers = hs;
		$("replay-status").textContent = "Replaying…";
		replayDone(api("POST", "/api/requests/http", body));
	}

	/* -------------------------------------------------- connections */

	function loadConns() {
		return get("/api/connections?limit=100").then(function (j) {
			conns = (j && j.connections) || [];
			renderConns();
		});
	}
	function renderConns() {
		syncRows($("connections").tBodies[0], conns, function (c) { return c.id; }, function (c) {
			var state = c.active ? el("span", { cls: "badge ok", text: "active" }) :
			    el("span", { cls: "badge " + (c.close_reason === "closed" || c.close_reason === "idle" ? "" : "bad"),
				text: c.close_reason || "closed" });
			var tr = el("tr", { "data-conn-id": c.id, "data-tunnel": c.tunnel || "",
				"data-active": c.active ? "1" : "0" });
			tr.appendChild(td("ID", c.id));
			tr.appendChild(td("Tunnel", c.tunnel));
			tr.appendChild(td("Type", c.type));
			tr.appendChild(td("Remote", el("span", { cls: "mono", text: c.remote_addr || "-" })));
			tr.appendChild(td("Start", clock(c.start)));
			tr.appendChild(td("Duration", ms(c.duration_ms), "num"));
			tr.appendChild(td("In", bytes(c.bytes_in), "num"));
			tr.appendChild(td("Out", bytes(c.bytes_out), "num"));
			tr.appendChild(td("State", state));
			tr.appendChild(td("SNI", c.sni || "-"));
			return tr;
		}, "No connections yet.", 10);
	}

	/* ------------------------------------------------------- events */

	function onEvent(e) {
		var ev;
		try { ev = JSON.parse(e.data); } catch (x) { return; }
		if (!ev || typeof ev !== "object") return;
		/* the SSE event name is the event's type */
		var t = e.type && e.type !== "message" ? e.type : ev.type;
		if (t === "request") {
			onRequestEvent(ev);
			debounce("tunnels", function () { loadTunnels().catch(quiet); }, 1000);
		} else if (t === "connection_closed") {
			debounce("conns", function () { loadConns().catch(quiet); });
			debounce("tunnels", function () { loadTunnels().catch(quiet); }, 1000);
		} else if (/^(tunnel_|session_|reload_)/.test(t)) {
			debounce("tunnels", function () { loadTunnels().catch(quiet); });
		}
	}

	function refreshAll() {
		return Promise.all([loadTunnels(), loadRequests(), loadConns()]).then(function () {
			showError("");
		});
	}

	function openEventSource() {
		es = new EventSource("/api/events");
		es.addEventListener("open", function () {
			retryMs = 1000;
			setState("live");
			/* whatever happened while the stream was down */
			debounce("all", function () { refreshAll().catch(quiet); }, 300);
		});
		es.addEventListener("error", function () {
			if (!es) return;
			setState("reconnecting");
			if (es.readyState === EventSource.CLOSED) {
				es.close(); es = null;
				get("/api/tunnels").then(function () {}, function () {});
				setTimeout(function () { if (!es && started && !token) openEventSource(); }, retryMs);
				retryMs = Math.min(retryMs * 2, 15000);
			}
		});
		EVENT_TYPES.forEach(function (t) { es.addEventListener(t, onEvent); });
		es.addEventListener("message", onEvent);
	}

	function stopLive() {
		started = false;
		if (es) { es.close(); es = null; }
		clearInterval(pollTimer); pollTimer = null;
	}

	function start() {
		stopLive();
		$("auth").classList.add("hidden");
		$("app").classList.remove("hidden");
		setState("connecting");
		refreshAll().then(function () {
			started = true;
			if (token) {
				/* EventSource cannot send the Authorization header */
				setState("polling", "polling every 2 s");
				pollTimer = setInterval(function () { refreshAll().catch(quiet); }, POLL_MS);
			} else {
				openEventSource();
			}
		}).catch(function (e) {
			quiet(e);
			if (!(e instanceof Unauthorized)) {
				setState("reconnecting");
				setTimeout(start, 3000);
			}
		});
	}

	document.addEventListener("DOMContentLoaded", function () {
		$("auth-form").addEventListener("submit", function (e) {
			e.preventDefault();
			token = $("auth-token").value.trim();
			$("auth-error").textContent = "";
			$("auth-token").value = "";
			try { sessionStorage.setItem(TOKEN_KEY, token); } catch (x) { /* none */ }
			start();
		});
		$("replay").addEventListener("click", replay);
		$("replay-form").addEventListener("submit", sendForm);
		$("d-replay-of").addEventListener("click", function (e) {
			e.preventDefault();
			var id = this.getAttribute("data-request-id");
			if (id && reqs[id]) select(id);
		});
		Array.prototype.forEach.call(document.querySelectorAll("#detail-tabs button"), function (b) {
			b.addEventListener("click", function () { showTab(b.getAttribute("data-tab")); });
		});
		$("clear").addEventListener("click", function () {
			api("DELETE", "/api/requests/http").then(function () {
				reqs = {}; order = []; selected = null;
				renderRequests();
				renderDetail();
			}, quiet);
		});
		$("har").addEventListener("click", function (e) {
			/* a plain link cannot carry the token: fetch it instead */
			if (!token) return;
			e.preventDefault();
			fetch("/api/requests/http.har", { headers: { Authorization: "Bearer " + token } })
			    .then(function (r) { return r.blob(); }).then(function (b) {
				var a = el("a", { href: URL.createObjectURL(b), download: "mgrok.har" });
				document.body.appendChild(a);
				a.click();
				a.remove();
			}, quiet);
		});
		renderRequests();
		renderConns();
		start();
	});
})();
