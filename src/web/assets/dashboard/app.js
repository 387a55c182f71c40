/*
 * mgrok dashboard (the server's admin listener). Plain JS, no framework;
 * works under "default-src 'self'" (no inline script, no eval). Peer data
 * only ever reaches the page through textContent and attributes.
 * The API it uses is docs/api.md (/api/v1/...).
 */
(function () {
	"use strict";

	var TOKEN_KEY = "mgrok-admin-token";
	var MAX_EVENTS = 100;
	var POLL_MS = 2000;
	var CLUSTER_MS = 3000;
	var COLORS = ["#2f6fdb", "#d9480f", "#2b8a3e", "#9c36b5", "#e67700",
		"#0b7285", "#c2255c", "#5c940d", "#495057", "#1864ab"];
	var EVENT_TYPES = ["session_connected", "session_lost", "session_replaced",
		"session_kicked", "tunnel_up", "tunnel_down", "lease_held",
		"lease_expired", "request", "connection_closed", "reload_applied",
		"reload_refused", "tunnel_health", "member_ejected", "visitor_refused"];

	var token = null;
	try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { /* none */ }
	var info = null, infoAt = 0;
	var sessions = [], tunnels = [], haveSessions = false, haveTunnels = false;
	var events = [], lastSeq = 0;
	var traffic = null;
	var es = null, streamAbort = null, retryMs = 1000;
	var eventsTimer = null, infoTimer = null, pollTimer = null, trafficTimer = null, refreshTimer = null;
	var clusterTimer = null, clusterBusy = false;
	var started = false;

	/* the DOM helpers both pages share (/common/dom.js) */
	var D = window.mgrokDom;
	var $ = D.$, el = D.el, td = D.td, syncRows = D.syncRows, bytes = D.bytes;
	function rate(n) { return bytes(n) + "/s"; }

	function dur(s) {
		s = Math.max(0, Math.floor(s));
		var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
		    m = Math.floor(s % 3600 / 60), r = s % 60;
		if (d) return d + "d " + h + "h";
		if (h) return h + "h " + m + "m";
		if (m) return m + "m " + r + "s";
		return r + "s";
	}
	function clock(ms) {
		if (!ms) return "-";
		var d = new Date(ms);
		return d.toLocaleTimeString([], { hour12: false });
	}
	function ago(ms) { return ms ? dur((Date.now() - ms) / 1000) + " ago" : "-"; }

	var setState = D.setState, showError = D.showError,
	    Unauthorized = D.Unauthorized;

	/* ---------------------------------------------------------- API */

	function api(method, path, body) {
		return D.request(method, path, body, token, needAuth).then(function (r) {
			if (!r.ok)
				throw new Error(method + " " + path + ": " +
				    ((r.json && r.json.error) || (r.status + " " + r.statusText)));
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
		$("auth-token").focus();
	}

	function quiet(e) {
		if (e instanceof Unauthorized) return;
		showError(e && e.message ? e.message : String(e));
	}

	/* ------------------------------------------------------- header */

	function loadInfo() {
		return get("/api/v1/info").then(function (j) {
			info = j; infoAt = Date.now();
			renderHeader();
			clusterFollow();
		});
	}

	function renderHeader() {
		if (info) {
			$("version").textContent = info.version || "-";
			var up = (info.uptime_s || 0) + (Date.now() - infoAt) / 1000;
			$("uptime").textContent = dur(up);
			$("addr").textContent = [info.addr, info.domain].filter(Boolean).join(" · ");
			var r = info.reload, rs = $("reload-state");
			if (r && r.count) {
				rs.textContent = "reloads " + r.count + (r.ok ? "" : " (last failed: " + (r.error || "?") + ")");
				rs.className = "meta" + (r.ok ? "" : " err");
			} else {
				rs.textContent = "";
			}
		}
		$("count-sessions").textContent = String(haveSessions ? sessions.length : info ? info.sessions : 0);
		$("count-tunnels").textContent = String(haveTunnels ? tunnels.length : info ? info.tunnels : 0);
	}

	/* ------------------------------------------------------ tunnels */

	function loadTunnels() {
		return get("/api/v1/tunnels").then(function (j) {
			tunnels = (j && j.tunnels) || [];
			haveTunnels = true;
			renderTunnels();
		});
	}

	function publicLink(p) {
		if (p && /^https?:\/\//i.test(p))
			return el("a", { href: p, target: "_blank", rel: "noopener noreferrer", text: p });
		return el("span", { cls: "mono", text: p || "-" });
	}

	/* what its agent's health check says, with the last failure */
	function healthCell(t) {
		if (!t.health) return "-";
		var h = t.health, span = el("span", {
			cls: "badge " + (h.state === "up" ? "ok" : h.state === "down" ? "bad" : "warn"),
			text: h.state, "data-health": h.state });
		if (h.reason) span.title = h.reason;
		var wrap = el("span", {});
		wrap.appendChild(span);
		if (h.state === "down" && h.reason)
			wrap.appendChild(el("span", { cls: "muted", text: " " + h.reason }));
		return wrap;
	}

	function groupDetails(t) {
		var g = t.group;
		if (!g) return "";
		if (g.role === "group")
			return "group · " + g.strategy + " · " + g.usable + "/" + g.members.length + " members up";
		return "member of " + g.group + " · weight " + g.weight +
		    (g.ejected_s ? " · taken out for " + g.ejected_s + " s" : "") + " · ";
	}

	function tunnelDetails(t) {
		var gd = groupDetails(t);
		if (t.group && t.group.role === "group") return gd;
		return gd + tunnelTraffic(t);
	}

	function tunnelTraffic(t) {
		if (t.http) {
			var c = t.http.by_class || {};
			return t.http.requests + " req · 2xx " + (c["2xx"] || 0) + " 3xx " + (c["3xx"] || 0) +
			    " 4xx " + (c["4xx"] || 0) + " 5xx " + (c["5xx"] || 0) + " · avg " +
			    (Number(t.http.latency_avg_ms) || 0).toFixed(1) + " ms";
		}
		if (t.udp)
			return t.udp.flows_active + "/" + t.udp.flows + " flows · " + t.udp.datagrams_in +
			    " dg in · " + t.udp.datagrams_out + " dg out · " + t.udp.drops + " drops";
		return "";
	}

	function renderTunnels() {
		syncRows($("tunnels").tBodies[0], tunnels, function (t) { return t.id; }, function (t) {
			var st = el("span", { cls: "badge " + (t.state === "up" ? "ok" : "warn"), text: t.state });
			var tr = el("tr", { "data-tunnel-id": t.id, "data-tunnel-name": t.name,
				"data-state": t.state });
			tr.appendChild(td("ID", t.id));
			tr.appendChild(td("Name", el("b", { text: t.name })));
			tr.appendChild(td("Type", t.type));
			tr.appendChild(td("Public", publicLink(t.public), "wide"));
			tr.appendChild(td("State", st));
			tr.appendChild(td("Health", healthCell(t)));
			tr.appendChild(td("Session", t.session === null || t.session === undefined ? "-" : t.session));
			tr.appendChild(td("Token", t.token || "-"));
			tr.appendChild(td("In", bytes(t.bytes_in), "num"));
			tr.appendChild(td("Out", bytes(t.bytes_out), "num"));
			tr.appendChild(td("Conns", (t.connections_active || 0) + "/" + (t.connections || 0), "num"));
			tr.appendChild(td("Details", tunnelDetails(t), "muted wide"));
			return tr;
		}, "No tunnels.", 12);
		$("tunnels-count").textContent = String(tunnels.length);
		renderHeader();
	}

	/* ----------------------------------------------------- sessions */

	function loadSessions() {
		return get("/api/v1/sessions").then(function (j) {
			sessions = (j && j.sessions) || [];
			haveSessions = true;
			renderSessions();
		});
	}

	function kick(s) {
		var who = "session " + s.id + (s.token ? " (" + s.token + ")" : "");
		if (!window.confirm("Kick " + who + "? Its tunnels go into their lease's grace."))
			return;
		api("DELETE", "/api/v1/sessions/" + encodeURIComponent(s.id)).then(function () {
			showError("");
			scheduleRefresh();
		}, quiet);
	}

	function renderSessions() {
		syncRows($("sessions").tBodies[0], sessions, function (s) { return s.id; }, function (s) {
			var tr = el("tr", { "data-session-id": s.id, "data-token": s.token || "" });
			var b = el("button", { type: "button", cls: "danger kick", "data-session-id": s.id,
				text: "Kick", title: "close this session" });
			b.addEventListener("click", function () { kick(s); });
			var id = el("span", { title: "client " + (s.client_id || ""), text: String(s.id) });
			tr.appendChild(td("ID", id));
			tr.appendChild(td("Token", s.token || "-"));
			tr.appendChild(td("Remote", el("span", { cls: "mono", text: s.remote_addr || "-" })));
			tr.appendChild(td("Version", s.version || "-"));
			var c = td("Connected", ago(s.connected_ms));
			c.setAttribute("data-since", s.connected_ms || "");
			tr.appendChild(c);
			tr.appendChild(td("State", s.state || "-"));
			tr.appendChild(td("Tunnels", (s.tunnels || []).join(", ") || "-"));
			tr.appendChild(td("In", bytes(s.bytes_in), "num"));
			tr.appendChild(td("Out", bytes(s.bytes_out), "num"));
			tr.appendChild(td("Streams", s.streams, "num"));
			tr.appendChild(td("", b));
			return tr;
		}, "No sessions.", 11);
		$("sessions-count").textContent = String(sessions.length);
		renderHeader();
	}

	function refreshLists() {
		return Promise.all([loadTunnels(), loadSessions()]).then(function () {
			showError("");
		}, quiet);
	}

	function scheduleRefresh() {
		if (refreshTimer) return;
		refreshTimer = setTimeout(function () {
			refreshTimer = null;
			refreshLists();
		}, 250);
	}

	/* ------------------------------------------------------- events */

	function summary(ev) {
		var skip = { seq: 1, time: 1, type: 1 }, parts = [], k, v;
		for (k in ev) {
			if (!Object.prototype.hasOwnProperty.call(ev, k) || skip[k]) continue;
			v = ev[k];
			if (v === null || v === undefined || v === "") continue;
			if (k === "bytes_in" || k === "bytes_out") v = bytes(v);
			else if (k === "duration_ms") v = Number(v).toFixed(1) + " ms";
			else if (typeof v === "object") v = JSON.stringify(v);
			parts.push(k + "=" + v);
		}
		return parts.join(" ");
	}

	function addEvent(ev) {
		if (!ev || typeof ev !== "object") return;
		if (ev.seq) {
			if (ev.seq <= lastSeq && events.some(function (x) { return x.seq === ev.seq; }))
				return;
			if (ev.seq > lastSeq) lastSeq = ev.seq;
		}
		events.unshift(ev);
		events.sort(function (a, b) { return (b.seq || 0) - (a.seq || 0); });
		if (events.length > MAX_EVENTS) events.length = MAX_EVENTS;
		/* a new stream starts with up to 1000 kept events: draw once */
		if (!eventsTimer)
			eventsTimer = setTimeout(function () { eventsTimer = null; renderEvents(); }, 50);
		var t = ev.type || "";
		if (/^(tunnel_|session_|lease_)/.test(t)) scheduleRefresh();
		if (/^(reload_|session_|tunnel_)/.test(t) && !infoTimer)
			infoTimer = setTimeout(function () { infoTimer = null; loadInfo().catch(quiet); }, 500);
	}

	function renderEvents() {
		var ul = $("events");
		ul.textContent = "";
		events.forEach(function (ev) {
			var bad = /lost|down|kicked|expired|refused/.test(ev.type || "");
			ul.appendChild(el("li", { "data-type": ev.type, "data-seq": ev.seq }, [
				el("span", { cls: "t", text: clock(ev.time) }),
				el("span", { cls: "ty " + (bad ? "s4" : "s2"), text: ev.type || "?" }),
				el("span", { text: summary(ev) })
			]));
		});
		if (!events.length)
			ul.appendChild(el("li", { cls: "muted", text: "No events yet." }));
	}

	function onMessage(e) {
		var ev;
		try { ev = JSON.parse(e.data); } catch (x) { return; }
		if (!ev || typeof ev !== "object") return;
		/* the SSE event name is the event's type */
		if (e.type && e.type !== "message") ev.type = e.type;
		addEvent(ev);
	}

	/* EventSource when no token is needed (it cannot send headers) */
	function openEventSource() {
		var url = "/api/v1/events" + (lastSeq ? "?since=" + lastSeq : "");
		es = new EventSource(url);
		es.addEventListener("open", function () {
			retryMs = 1000;
			setState("live");
			scheduleRefresh();
		});
		es.addEventListener("error", function () {
			if (!es) return;
			if (es.readyState === EventSource.CLOSED) {
				/* the browser gave up (an HTTP error): try again ourselves */
				es.close(); es = null;
				setState("reconnecting");
				get("/api/v1/info").then(function () {}, function () {});
				setTimeout(function () { if (!es && !token && started) openEventSource(); }, retryMs);
				retryMs = Math.min(retryMs * 2, 15000);
			} else {
				setState("reconnecting");
			}
		});
		EVENT_TYPES.forEach(function (t) { es.addEventListener(t, onMessage); });
		es.addEventListener("message", onMessage);
	}

	/* with a token: read the stream through fetch (which can send the
	 * Authorization header), and poll the lists as well */
	function openFetchStream() {
		if (!window.ReadableStream || !window.AbortController) {
			setState("polling", "polling");
			return;
		}
		var ctl = new AbortController();
		streamAbort = ctl;
		var headers = { Accept: "text/event-stream", Authorization: "Bearer " + token };
		fetch("/api/v1/events" + (lastSeq ? "?since=" + lastSeq : ""),
		    { headers: headers, signal: ctl.signal, cache: "no-store" }).then(function (r) {
			if (r.status === 401) { needAuth(); return; }
			if (!r.ok || !r.body) throw new Error("events: " + r.status);
			setState("live", "live (lists polled)");
			retryMs = 1000;
			var rd = r.body.getReader(), dec = new TextDecoder(), buf = "";
			function pump() {
				return rd.read().then(function (x) {
					if (x.done) throw new Error("stream ended");
					buf += dec.decode(x.value, { stream: true });
					var i;
					while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
						var block = buf.slice(0, i);
						buf = buf.slice(i).replace(/^\r?\n\r?\n/, "");
						var type = "message", data = [];
						block.split(/\r?\n/).forEach(function (line) {
							if (line.indexOf("event:") === 0) type = line.slice(6).trim();
							else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
						});
						if (data.length) onMessage({ type: type, data: data.join("\n") });
					}
					return pump();
				});
			}
			return pump();
		}).catch(function () {
			if (streamAbort !== ctl || !token) return;
			streamAbort = null;
			setState("reconnecting", "reconnecting (lists polled)");
			setTimeout(function () { if (!streamAbort && token && started) openFetchStream(); }, retryMs);
			retryMs = Math.min(retryMs * 2, 15000);
		});
	}

	/* ------------------------------------------------------ cluster */

	/* shown only when /api/v1/info says this server is in a cluster;
	 * the view is read from the cluster's store on each refresh */
	function clusterFollow() {
		var on = !!(info && info.cluster && typeof info.cluster === "object");
		$("cluster").classList.toggle("hidden", !on);
		if (on && !clusterTimer && started) {
			loadCluster();
			clusterTimer = setInterval(loadCluster, CLUSTER_MS);
		} else if (!on && clusterTimer) {
			clearInterval(clusterTimer); clusterTimer = null;
		}
	}

	function clusterError(msg) {
		var e = $("cluster-error");
		e.textContent = msg || "";
		e.classList.toggle("hidden", !msg);
	}

	function loadCluster() {
		if (clusterBusy) return;
		clusterBusy = true;
		D.request("GET", "/api/v1/cluster", undefined, token, needAuth).then(function (r) {
			clusterBusy = false;
			if (!r.ok) {
				clusterError("cluster view: " + ((r.json && r.json.error) ||
				    (r.status + " " + r.statusText)));
				return;
			}
			clusterError("");
			renderCluster(r.json || {});
		}, function (e) {
			clusterBusy = false;
			if (!(e instanceof Unauthorized)) clusterError("cluster view: " + (e && e.message || e));
		});
	}

	function ttl(ms) {
		return ms === null || ms === undefined ? "none" : (ms / 1000).toFixed(1) + " s";
	}

	function renderCluster(c) {
		var nodes = c.nodes || [], routes = c.routes || [];
		syncRows($("cluster-nodes").tBodies[0], nodes, function (n) { return n.id; }, function (n) {
			var tr = el("tr", { "data-node-id": n.id, "data-self": n.self ? "1" : "0" });
			var name = el("span", {}, [el("b", { text: n.id })]);
			if (n.self) name.appendChild(el("span", { cls: "badge ok self", text: "this node",
				title: "the node this dashboard belongs to" }));
			tr.appendChild(td("Node", name));
			tr.appendChild(td("Address", el("span", { cls: "mono", text: n.addr || "-" })));
			tr.appendChild(td("Sessions", n.sessions === null ? "-" : n.sessions, "num"));
			tr.appendChild(td("Tunnels", n.tunnels === null ? "-" : n.tunnels, "num"));
			tr.appendChild(td("Up for", n.age_s === null || n.age_s === undefined ? "-" : dur(n.age_s)));
			tr.appendChild(td("Record TTL", ttl(n.ttl_ms), "num"));
			return tr;
		}, "No node records.", 6);
		syncRows($("cluster-routes").tBodies[0], routes, function (r) { return r.key; }, function (r) {
			var tr = el("tr", { "data-route-key": r.key, "data-owner": r.node || "",
				"data-kind": r.kind || "" });
			tr.appendChild(td("Kind", r.kind || "?"));
			tr.appendChild(td("Name", el("span", { cls: "mono", text: r.name || "" }), "wide"));
			var own = el("span", { text: r.node || "-" });
			if (r.node && r.node === c.node) own.className = "s2";
			tr.appendChild(td("Owner", own));
			tr.appendChild(td("Epoch", r.epoch === null ? "-" : String(r.epoch), "num mono"));
			tr.appendChild(td("TTL", ttl(r.ttl_ms), "num"));
			return tr;
		}, "No routes.", 5);
		$("cluster-count").textContent = nodes.length + " node" + (nodes.length === 1 ? "" : "s") +
		    (c.store && c.store.rtt_us !== undefined ? " · store round trip " +
		    (c.store.rtt_us / 1000).toFixed(2) + " ms" : "");
		$("cluster-routes-count").textContent = routes.length + (c.truncated ? " (truncated)" : "");
	}

	/* -------------------------------------------------------- chart */

	function loadTraffic() {
		return get("/api/v1/traffic").then(function (j) {
			traffic = j;
			drawChart();
		});
	}

	function niceMax(v) {
		if (v <= 0) return 1024;
		var p = Math.pow(2, Math.ceil(Math.log(v) / Math.LN2));
		/* 1, 1.5, 2 steps on a binary scale reads well with KB/MB */
		if (p * 0.75 >= v) return p * 0.75;
		return p;
	}

	function svgEl(tag, attrs) {
		var e = document.createElementNS("http://www.w3.org/2000/svg", tag), k;
		for (k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
		return e;
	}

	function drawChart() {
		var svg = $("traffic-chart"), leg = $("chart-legend");
		var W = Math.max(200, Math.round(svg.getBoundingClientRect().width) || 800);
		var H = Math.max(120, Math.round(svg.getBoundingClientRect().height) || 240);
		svg.setAttribute("viewBox", "0 0 " + W + " " + H);
		svg.textContent = "";
		leg.textContent = "";
		var iv = (traffic && traffic.interval_s) || 2;
		var series = (traffic && traffic.tunnels) || [];
		var n = Math.round(300 / iv), max = 0;
		series.forEach(function (s) {
			(s["in"] || []).concat(s.out || []).forEach(function (v) {
				if (v / iv > max) max = v / iv;
			});
			n = Math.max(n, (s["in"] || []).length, (s.out || []).length);
		});
		var top = niceMax(max);
		var L = 64, R = 8, T = 8, B = 20, pw = W - L - R, ph = H - T - B;
		var i, y, g = svgEl("g", {});
		for (i = 0; i <= 4; i++) {
			y = T + ph - ph * i / 4;
			g.appendChild(svgEl("line", { x1: L, x2: W - R, y1: y, y2: y, "class": "axis" }));
			var tx = svgEl("text", { x: L - 6, y: y + 4, "text-anchor": "end" });
			tx.textContent = rate(top * i / 4);
			g.appendChild(tx);
		}
		[[0, "-5m"], [0.5, "-2.5m"], [1, "now"]].forEach(function (p) {
			var t = svgEl("text", { x: L + pw * p[0], y: H - 4,
				"text-anchor": p[0] === 0 ? "start" : p[0] === 1 ? "end" : "middle" });
			t.textContent = p[1];
			g.appendChild(t);
		});
		svg.appendChild(g);
		function line(vals, color, dashed, label) {
			if (!vals || !vals.length) return;
			var pts = [], off = n - vals.length, j;
			for (j = 0; j < vals.length; j++) {
				var x = L + (n <= 1 ? pw : pw * (off + j) / (n - 1));
				var yy = T + ph - ph * Math.min(1, (Number(vals[j]) || 0) / iv / top);
				pts.push(x.toFixed(1) + "," + yy.toFixed(1));
			}
			var pl = svgEl("polyline", { points: pts.join(" "), fill: "none", stroke: color,
				"stroke-width": 1.8, "stroke-linejoin": "round" });
			if (dashed) pl.setAttribute("stroke-dasharray", "5 3");
			var title = svgEl("title", {});
			title.textContent = label;
			pl.appendChild(title);
			svg.appendChild(pl);
		}
		series.forEach(function (s, k) {
			var c = COLORS[k % COLORS.length];
			var last = function (a) { return a && a.length ? a[a.length - 1] / iv : 0; };
			line(s["in"], c, false, s.name + " in");
			line(s.out, c, true, s.name + " out");
			leg.appendChild(el("span", { "data-tunnel-id": s.id, "data-tunnel-name": s.name }, [
				el("span", { cls: "sw", style: "background:" + c }),
				el("b", { text: s.name }), " in " + rate(last(s["in"])) + " ",
				el("span", { cls: "sw dash", style: "border-color:" + c }),
				"out " + rate(last(s.out))
			]));
		});
		if (!series.length) {
			var t = svgEl("text", { x: L + pw / 2, y: T + ph / 2, "text-anchor": "middle" });
			t.textContent = "no tunnels";
			svg.appendChild(t);
		}
	}

	/* -------------------------------------------------------- start */

	function stopLive() {
		started = false;
		if (es) { es.close(); es = null; }
		if (streamAbort) { var a = streamAbort; streamAbort = null; a.abort(); }
		clearInterval(pollTimer); pollTimer = null;
		clearInterval(trafficTimer); trafficTimer = null;
		clearInterval(clusterTimer); clusterTimer = null;
	}

	function start() {
		stopLive();
		$("auth").classList.add("hidden");
		$("app").classList.remove("hidden");
		setState("connecting");
		loadInfo().then(function () {
			started = true;
			clusterFollow();
			return Promise.all([loadSessions(), loadTunnels(), loadTraffic()]);
		}).then(function () {
			showError("");
			/* the counters in the lists move with the traffic: refresh
			 * them with the chart (events only say what came and went) */
			trafficTimer = setInterval(function () {
				loadTraffic().catch(quiet);
				if (!token) refreshLists();
			}, POLL_MS);
			if (token) {
				pollTimer = setInterval(refreshLists, POLL_MS);
				openFetchStream();
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
		var rt = null;
		window.addEventListener("resize", function () {
			clearTimeout(rt);
			rt = setTimeout(drawChart, 150);
		});
		setInterval(function () {
			if (info) renderHeader();
			Array.prototype.forEach.call(document.querySelectorAll("td[data-since]"), function (c) {
				c.textContent = ago(Number(c.getAttribute("data-since")));
			});
		}, 1000);
		renderEvents();
		drawChart();
		start();
	});
})();
