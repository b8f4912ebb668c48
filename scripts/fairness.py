#!/usr/bin/env python3
"""The driver of scripts/bench-fairness.sh: legitimate visitors and bots against one room.

    scripts/fairness.py preflight BASE_URL ADMIN_KEY ADDR_MODE
    scripts/fairness.py run BASE_URL ADMIN_KEY ADDR_MODE VARIANT OUT.json
    scripts/fairness.py report TARGET OUT_DIR BENCHMARKS.md CHART.svg DATA.json
    scripts/fairness.py check TARGET OUT_DIR

Standard library only (asyncio with a small HTTP/1.1 client, hashlib for the proof of work).

Who a client is: ADDR_MODE `xff` gives each client its own X-Forwarded-For (the origin started
with 127.0.0.1 among its trusted proxies), `cf` its own CF-Connecting-IP, `bind` its own source
address in 127.0.0.0/8 (Linux routes all of it to the loopback interface). `preflight` checks
that the target tells two clients apart by it and that a join limit refuses with 429.

A run: LEGIT visitors arrive evenly over DURATION_S seconds, each from its own address; each
joins once (solving the room's proof of work first when it asks, in two worker processes so that
the visitors' event loop stays on time) and then polls its status after `poll_after_ms` until
admitted, as the waiting page does. BOTS bot clients (each its own address, BOT_CONNS
connections each) join as fast as they can for the DURATION_S seconds, in a process of their
own (so its CPU time is theirs alone), keeping every ticket. The room has one shard, so
admission is exactly FIFO by the place's sequence number: the first FIRST admissions are the
FIRST places with the lowest sequence numbers, bot or not. At the end every bot place among
them is asked for its status (each must say `admitted`) and the room's `admitted_total` must
have reached FIRST, which checks the claim.

Variants: baseline (no bots, no defence), bots (no defence), limit (a join limit,
per_client_per_min 6, burst 3, without a penalty), penalty (the README's recommended setting: that
limit with penalize_after 10), penalty_prequeue (the same, in a room whose sale opens 10 s after
the first arrivals, with a pre-queue from before them: an event), pow12 and pow16 (proof of work, 12 and 16 bits), limit_pow16 (the
limit without a penalty, and 16 bits).

With a penalty, places end: a bot place ended before admission reached it is no admission, so
the first FIRST admissions are then the admissions the room made to places that were ended
(`admitted_total` less the admissions still held: counted as bot admissions, all among the first)
and the first live places by sequence number after them.

Environment: LEGIT (1000), DURATION_S (60), BOTS (20), BOT_CONNS (3), BOT_RATE (joins/s per
bot connection, 0 = unbounded), ADMIT_PER_MINUTE (600), FIRST (500), CAP_S (how long the
visitors may wait for admission before the run ends: 3 x DURATION_S).
"""
import asyncio
import concurrent.futures
import datetime
import hashlib
import json
import multiprocessing
import os
import platform
import re
import resource
import sys
import time
import urllib.parse

LIMIT = {"per_client_per_min": 6, "burst": 3}
RECOMMENDED = {**LIMIT, "penalize_after": 10}  # README.md's recommended setting
VARIANTS = {
    "baseline": {"bots": False, "room": {}},
    "bots": {"bots": True, "room": {}},
    "limit": {"bots": True, "room": {"join_limit": LIMIT}},
    "penalty": {"bots": True, "room": {"join_limit": RECOMMENDED}},
    # A sale as the README sets one up: a pre-queue from before the first arrival, opening 10 s in.
    "penalty_prequeue": {"bots": True, "room": {"join_limit": RECOMMENDED}, "opens_after_s": 10},
    "pow12": {"bots": True, "room": {"challenge": {"kind": "pow", "difficulty": 12}}},
    "pow16": {"bots": True, "room": {"challenge": {"kind": "pow", "difficulty": 16}}},
    "limit_pow16": {"bots": True, "room": {"join_limit": LIMIT,
                                           "challenge": {"kind": "pow", "difficulty": 16}}},
}
TITLES = {
    "baseline": "no bots, no defence (baseline)",
    "bots": "20 bots, no defence",
    "limit": "20 bots, join limit 6/min, burst 3, no penalty",
    "penalty": "20 bots, join limit 6/min, burst 3, penalize_after 10 (recommended)",
    "penalty_prequeue": "20 bots, the recommended limit, the sale opening 10 s in after a pre-queue",
    "pow12": "20 bots, proof of work, 12 bits",
    "pow16": "20 bots, proof of work, 16 bits",
    "limit_pow16": "20 bots, join limit (no penalty) and proof of work, 16 bits",
}
# What the variants were called in rows a report keeps from an earlier run.
OLD_TITLES = {
    "limit": ["20 bots, join limit 6/min, burst 3 (recommended)"],
    "limit_pow16": ["20 bots, join limit (recommended) and proof of work, 16 bits"],
}


def env_int(name, default):
    return int(os.environ.get(name, default))


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 over asyncio streams, keep-alive, Content-Length or chunked bodies.

TIMEOUT_S = 30.0  # a request unanswered this long is given up (and its connection closed)


class Conn:
    def __init__(self, url, client_ip, mode):
        self.host, self.port = url.hostname, url.port
        self.client_ip, self.mode = client_ip, mode
        self.reader = self.writer = None

    async def _open(self):
        local = (self.client_ip, 0) if self.mode == "bind" else None
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, local_addr=local)

    def close(self):
        if self.writer:
            self.writer.close()
            self.reader = self.writer = None

    async def request(self, method, path, headers=None, body=None):
        """(status, headers, body bytes); one retry on a connection the server had closed."""
        for attempt in range(2):
            if self.writer is None:
                await self._open()
            try:
                return await asyncio.wait_for(self._exchange(method, path, headers or {}, body), TIMEOUT_S)
            except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.TimeoutError):
                self.close()
                if attempt == 1:
                    raise

    async def _exchange(self, method, path, headers, body):
        data = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(data)}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        if self.mode == "xff":
            lines.append(f"X-Forwarded-For: {self.client_ip}")
        elif self.mode == "cf":
            lines.append(f"CF-Connecting-IP: {self.client_ip}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        await self.writer.drain()
        status_line = await self.reader.readuntil(b"\r\n")
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        hdrs = {}
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            k, _, v = line.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if "content-length" in hdrs:
            payload = await self.reader.readexactly(int(hdrs["content-length"]))
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunks.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            payload = b"".join(c[:-2] for c in chunks)
        else:
            payload = await self.reader.read()
            self.close()
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, payload


def as_json(payload):
    try:
        return json.loads(payload)
    except ValueError:
        return {}


def err_code(doc):
    e = doc.get("error")
    return e.get("code") if isinstance(e, dict) else None


def retry_after(hdrs, default=1.0):
    try:
        return float(hdrs.get("retry-after", default))
    except ValueError:
        return default


# ---------------------------------------------------------------------------------------------
# Proof of work: a string nonce for which SHA-256(token + ":" + nonce) starts with BITS zero bits.

def solve(token, bits):
    """(nonce, hashes tried, CPU seconds)."""
    started = time.process_time()
    base = hashlib.sha256((token + ":").encode())
    shift = 256 - bits
    n = 0
    while True:
        h = base.copy()
        h.update(str(n).encode())
        if int.from_bytes(h.digest(), "big") >> shift == 0:
            return str(n), n + 1, time.process_time() - started
        n += 1


def leading_zero_bits_ok(token, nonce, bits):
    d = hashlib.sha256(f"{token}:{nonce}".encode()).digest()
    return int.from_bytes(d, "big") >> (256 - bits) == 0


async def join(conn, prefix, room, solver=None, stats=None):
    """One join with the proof of work when asked: (status, headers, doc, solve CPU, solve wall)."""
    path = f"{prefix}/rooms/{room}/join"
    status, hdrs, payload = await conn.request("POST", path, body={})
    doc = as_json(payload)
    cpu = wall = 0.0
    tries = 0
    while status == 403 and err_code(doc) == "challenge_required" and tries < 3:
        # Solve and join with the solution; a solution refused (say, the challenge expired while
        # the machine was busy) starts again with a new challenge, twice at most, counted.
        tries += 1
        ch = doc["challenge"]
        t0 = time.monotonic()
        nonce, _, c = await solver(ch["token"], ch["difficulty"])
        cpu += c
        wall += time.monotonic() - t0
        status, hdrs, payload = await conn.request(
            "POST", path, body={"challenge": {"token": ch["token"], "nonce": nonce}})
        doc = as_json(payload)
        if status == 403 and err_code(doc) == "challenge_failed" and solver_retries(stats):
            stats["challenge_failed_retried"] = stats.get("challenge_failed_retried", 0) + 1
            status, hdrs, payload = await conn.request("POST", path, body={})
            doc = as_json(payload)
    # wrangler dev's proxy drops a POST now and then with a 503 and Retry-After
    # (cloudflare/workers-sdk#14641): send it again, as a browser would, and count it.
    if status == 503 and "retry-after" in hdrs and stats is not None:
        stats["resent_503"] = stats.get("resent_503", 0) + 1
        await asyncio.sleep(min(2.0, max(0.1, retry_after(hdrs))))
        return await join(conn, prefix, room, solver, None)
    return status, hdrs, doc, cpu, wall


def solver_retries(stats):
    """Legitimate visitors (whose record has no "attempts") start again after a refused
    solution; bots count it and go on with their next join."""
    return stats is not None and "attempts" not in stats


def parse_ticket_id(tid):
    epoch, shard, seq = tid.rsplit("-", 2)
    return epoch, int(shard), int(seq)


# ---------------------------------------------------------------------------------------------
# Legitimate visitors.

async def visitor(i, url, mode, prefix, room, t0, arrive_at, deadline, pool, out):
    await asyncio.sleep(max(0.0, t0 + arrive_at - time.monotonic()))
    ip = legit_ip(i, mode)
    conn = Conn(url, ip, mode)
    loop = asyncio.get_running_loop()

    async def solver(token, bits):
        return await loop.run_in_executor(pool, solve, token, bits)

    rec = {"i": i, "ip": ip, "arrived": time.monotonic() - t0}
    out.append(rec)
    try:
        status, hdrs, doc, cpu, wall = await join(conn, prefix, room, solver, rec)
        rec["join_status"] = status
        rec["solve_cpu_s"], rec["solve_wall_s"] = cpu, wall
        if status != 200:
            rec["error"] = err_code(doc) or f"http {status}"
            return
        rec["joined"] = time.monotonic() - t0
        rec["ticket_id"] = doc["ticket_id"]
        ticket = doc["ticket"]
        while doc.get("status") == "waiting":
            # As the page does, with one more poll when the run ends.
            left = t0 + deadline - time.monotonic()
            if left <= 0:
                rec["unadmitted"] = True
                return
            await asyncio.sleep(min(doc.get("poll_after_ms", 1000) / 1000.0, left))
            rec["polls"] = rec.get("polls", 0) + 1
            try:
                status, hdrs, payload = await conn.request(
                    "GET", f"{prefix}/rooms/{room}/status", {"Authorization": f"Bearer {ticket}"})
            except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.TimeoutError):
                status, hdrs, payload = 599, {}, b""
            if status >= 500:
                # As the waiting page does: a failed poll is tried again a second later (counted).
                rec["poll_failures"] = rec.get("poll_failures", 0) + 1
                rec.setdefault("poll_failure_codes", []).append(status)
                doc = {"status": "waiting",
                       "poll_after_ms": 1000 * retry_after(hdrs) if status == 503 else 1000}
                continue
            doc = as_json(payload)
            if status != 200:
                rec["error"] = err_code(doc) or f"http {status}"
                return
        if doc.get("status") == "admitted":
            rec["admitted"] = time.monotonic() - t0
        else:
            rec["error"] = f"status {doc.get('status')}"
    except Exception as e:  # noqa: BLE001 - recorded, counted, reported
        rec["error"] = f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def legit_ip(i, mode):
    return f"127.1.{i // 250}.{1 + i % 250}" if mode == "bind" else f"10.1.{i // 250}.{1 + i % 250}"


def bot_ip(b, mode):
    return f"127.2.0.{1 + b}" if mode == "bind" else f"10.2.0.{1 + b}"


# ---------------------------------------------------------------------------------------------
# Bots: one process for all of them, so that its CPU time is theirs.

def bot_process(base, mode, room, n_bots, conns, rate, duration, start_at, queue):
    cpu0 = time.process_time()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(bots_main(base, mode, room, n_bots, conns, rate, duration, start_at))
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = time.process_time() - cpu0
    result["rusage_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    queue.put(result)


async def bots_main(base, mode, room, n_bots, conns, rate, duration, start_at):
    url = urllib.parse.urlparse(base)
    prefix = "/_qg/v1"
    places = []  # (ticket_id, ticket, bot, t)
    stats = {"attempts": 0, "limited": 0, "challenge_failed": 0, "other": {}, "solve_cpu_s": 0.0,
             "solves": 0, "resent_503": 0, "errors": 0}

    async def solver(token, bits):
        # In the bot's own loop: a bot's CPU is the point.
        nonce, tries, cpu = solve(token, bits)
        stats["solves"] += 1
        stats["solve_cpu_s"] += cpu
        return nonce, tries, cpu

    await asyncio.sleep(max(0.0, start_at - time.time()))
    t0 = time.monotonic()
    end = t0 + duration

    async def connection(b):
        conn = Conn(url, bot_ip(b, mode), mode)
        while time.monotonic() < end:
            began = time.monotonic()
            stats["attempts"] += 1
            try:
                status, hdrs, doc, _, _ = await join(conn, prefix, room, solver, stats)
            except Exception:  # noqa: BLE001
                stats["errors"] += 1
                conn.close()
                await asyncio.sleep(0.1)
                continue
            if status == 200:
                places.append((doc["ticket_id"], doc["ticket"], b, time.monotonic() - t0))
            elif status == 429:
                stats["limited"] += 1
                # A clever bot: back at the door a quarter of a second later, so it takes each
                # join its allowance gives within 0.25 s, without flooding 429s.
                await asyncio.sleep(0.25)
            elif status == 403 and err_code(doc) == "challenge_failed":
                stats["challenge_failed"] += 1
            else:
                key = f"{status} {err_code(doc)}"
                stats["other"][key] = stats["other"].get(key, 0) + 1
                await asyncio.sleep(0.1)
            if rate > 0:
                await asyncio.sleep(max(0.0, began + 1.0 / rate - time.monotonic()))
        conn.close()

    await asyncio.gather(*(connection(b) for b in range(n_bots) for _ in range(conns)))
    stats["places"] = places
    stats["wall_s"] = time.monotonic() - t0
    return stats


# ---------------------------------------------------------------------------------------------
# Admin.

async def admin(conn, key, method, path, body=None):
    status, _, payload = await conn.request(method, f"/_qg/v1/admin{path}",
                                            {"Authorization": f"Bearer {key}"}, body)
    return status, as_json(payload)


async def put_room(base, key, room, extra):
    url = urllib.parse.urlparse(base)
    conn = Conn(url, "127.0.0.1", "none")
    cfg = {"max_active": 100000, "admit_per_minute": env_int("ADMIT_PER_MINUTE", 600), "shards": 1,
           "claim_window_s": 3600, "session_ttl_s": 3600, "ticket_ttl_s": 7200,
           "paths": [f"/{room}"]}
    cfg.update(extra)
    status, doc = await admin(conn, key, "PUT", f"/rooms/{room}", cfg)
    conn.close()
    return status, doc, cfg


async def preflight(base, key, mode):
    """Two clients told apart, and a join limit refusing the second join of one of them."""
    url = urllib.parse.urlparse(base)
    room = f"preflight{int(time.time() * 1000) % 10**9}"
    status, doc, _ = await put_room(base, key, room,
                                    {"join_limit": {"per_client_per_min": 1, "burst": 1}})
    if status not in (200, 201):
        return f"creating the room: {status} {doc}"
    a, b = (legit_ip(900, mode), legit_ip(901, mode))
    got = []
    for ip in (a, a, b):
        conn = Conn(url, ip, mode)
        s, hdrs, d, _, _ = await join(conn, "/_qg/v1", room)
        conn.close()
        got.append((s, err_code(d)))
    if got[0][0] != 200 or got[1] != (429, "too_many_joins") or got[2][0] != 200:
        return (f"with addresses by {mode}: first client {got[0]}, again {got[1]} "
                f"(want 429 too_many_joins), a second client {got[2]} (want 200)")
    return None


# ---------------------------------------------------------------------------------------------
# A run.

async def bot_statuses(url, mode, room, places, which):
    """The status of the bot places numbered `which`, each asked from its bot's address."""
    sem = asyncio.Semaphore(16)
    out = {}

    async def one(n):
        tid, ticket, b, _ = places[n]
        async with sem:
            c = Conn(url, bot_ip(b, mode), mode)
            try:
                s, _, payload = await c.request("GET", f"/_qg/v1/rooms/{room}/status",
                                                {"Authorization": f"Bearer {ticket}"})
                out[n] = as_json(payload).get("status") if s == 200 else f"http {s}"
            finally:
                c.close()

    await asyncio.gather(*(one(n) for n in which))
    return out

async def run_variant(base, key, mode, variant, out_path):
    spec = VARIANTS[variant]
    legit = env_int("LEGIT", 1000)
    duration = float(os.environ.get("DURATION_S", 60))
    n_bots = env_int("BOTS", 20) if spec["bots"] else 0
    conns = env_int("BOT_CONNS", 3)
    rate = float(os.environ.get("BOT_RATE", 0))
    first = env_int("FIRST", 500)
    cap = float(os.environ.get("CAP_S", 3 * duration))
    url = urllib.parse.urlparse(base)
    room = f"fair-{variant}"
    status, doc, cfg = await put_room(base, key, room, spec["room"])
    result = {"variant": variant, "title": TITLES[variant], "legit": legit, "duration_s": duration,
              "bots": n_bots, "bot_conns": conns, "bot_rate": rate, "first": first, "cap_s": cap,
              "room": cfg, "addr_mode": mode}
    if status not in (200, 201):
        result["unsupported"] = f"PUT room: {status} {doc}"
        with open(out_path, "w") as f:
            json.dump(result, f, indent=1)
        print(f"{variant}: the target refused the room ({status} {err_code(doc)}): not run")
        return result

    start_at = time.time() + 1.0
    if spec.get("opens_after_s"):
        now_ms = int(time.time() * 1000)
        # 10 s into a 60 s run; scaled with the run (QUICK=1's 5 s run opens under a second in).
        opens = int((start_at + spec["opens_after_s"] * duration / 60.0) * 1000)
        event = {"prequeue_at": now_ms, "start_at": opens, "end_at": opens + 3_600_000}
        conn = Conn(url, "127.0.0.1", "none")
        st, doc = await admin(conn, key, "PUT", f"/rooms/{room}/events/opening", event)
        conn.close()
        if st not in (200, 201):
            raise SystemExit(f"{variant}: the event was refused: {st} {doc}")
        result["event"] = event
    queue = multiprocessing.get_context("fork").Queue()
    bots = None
    if n_bots:
        bots = multiprocessing.get_context("fork").Process(
            target=bot_process, args=(base, mode, room, n_bots, conns, rate, duration, start_at, queue))
        bots.start()
    pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    await asyncio.sleep(max(0.0, start_at - time.time()))
    t0 = time.monotonic()
    records = []
    tasks = [asyncio.create_task(visitor(i, url, mode, "/_qg/v1", room, t0, duration * i / legit,
                                         cap, pool, records)) for i in range(legit)]
    await asyncio.gather(*tasks)
    legit_done = time.monotonic() - t0
    bot = queue.get() if bots else {"places": []}
    if bots:
        bots.join()
    pool.shutdown()

    # The first FIRST places by sequence number are the first FIRST admissions (one shard, FIFO).
    places = [(parse_ticket_id(r["ticket_id"]), "legit", r["i"]) for r in records if "ticket_id" in r]
    places += [(parse_ticket_id(tid), "bot", n) for n, (tid, _, _, _) in enumerate(bot["places"])]
    epochs = {p[0][0] for p in places}
    shards = {p[0][1] for p in places}
    seqs = [p[0][2] for p in places]
    places.sort(key=lambda p: p[0][2])
    penalizing = bool(spec["room"].get("join_limit", {}).get("penalize_after"))
    ended_bot = set()
    admitted_ended = 0
    conn = Conn(url, "127.0.0.1", "none")
    _, view = await admin(conn, key, "GET", f"/rooms/{room}")
    conn.close()
    admitted_total = view.get("stats", {}).get("admitted_total")
    if penalizing:
        # Every bot place's status: which ended (taken for a bot), which hold an admission.
        statuses = await bot_statuses(url, mode, room, bot["places"], range(len(bot["places"])))
        ended_bot = {n for n, st in statuses.items() if st not in ("waiting", "admitted")}
        live_bot_admitted = sum(1 for st in statuses.values() if st == "admitted")
        legit_seen = sum(1 for r in records if "admitted" in r)
        admitted_ended = max(0, (admitted_total or 0) - legit_seen - live_bot_admitted)
        places = [p for p in places if not (p[1] == "bot" and p[2] in ended_bot)]
    head = places[:max(0, first - admitted_ended)]
    bots_in_head = sum(1 for p in head if p[1] == "bot") + admitted_ended

    # Checks: one epoch and shard, no seq given twice, the room admitted at least FIRST by the end,
    # every bot place among the first FIRST says admitted, every legit one among them was seen
    # admitted.
    checks = []
    if len(epochs) > 1 or shards - {0}:
        checks.append(f"places in epochs {epochs} and shards {shards}")
    if len(set(seqs)) != len(seqs):
        checks.append("a sequence number given twice")
    head_bot_status = {}
    statuses = await bot_statuses(url, mode, room, bot["places"], [p[2] for p in head if p[1] == "bot"])
    for st in statuses.values():
        head_bot_status[st] = head_bot_status.get(st, 0) + 1
    if admitted_total is None or admitted_total < min(first, len(places) + admitted_ended):
        checks.append(f"admitted_total {admitted_total} < {first} by the end")
    elif set(head_bot_status) - {"admitted"}:
        checks.append(f"bot places among the first {first}: {head_bot_status}")
    by_i = {r["i"]: r for r in records}
    unseen = [p for p in head if p[1] == "legit" and "admitted" not in by_i[p[2]]]
    if unseen and admitted_total is not None and admitted_total >= first:
        checks.append(f"{len(unseen)} legit visitors among the first {first} not seen admitted")

    waits = [r["admitted"] - r["arrived"] for r in records if "admitted" in r]
    errors = {}
    for r in records:
        if "error" in r:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    solve_walls = [r["solve_wall_s"] for r in records if r.get("solve_wall_s")]
    result.update({
        "date": datetime.date.today().isoformat(),
        "legit_run_s": legit_done,
        "places": len(places),
        "legit_places": sum(1 for p in places if p[1] == "legit"),
        "bot_places": len(bot["places"]),
        "bot_places_ended": len(ended_bot),
        "bot_admissions_ended": admitted_ended,
        "bots_in_first": bots_in_head,
        "first_counted": len(head) + admitted_ended,
        "bot_share_first": bots_in_head / (len(head) + admitted_ended) if head or admitted_ended else None,
        "head_bot_status": head_bot_status,
        "admitted_total_end": admitted_total,
        "legit_admitted": len(waits),
        "legit_unadmitted": sum(1 for r in records if r.get("unadmitted")),
        "legit_errors": errors,
        "legit_limited": sum(1 for r in records if r.get("error") == "too_many_joins"),
        "legit_resent_503": sum(r.get("resent_503", 0) for r in records),
        "legit_challenge_retried": sum(r.get("challenge_failed_retried", 0) for r in records),
        "legit_poll_failures": sum(r.get("poll_failures", 0) for r in records),
        "legit_poll_failure_codes": sorted({c for r in records for c in r.get("poll_failure_codes", [])}),
        "waits": sorted(waits),
        "legit_solve_wall_s": sorted(solve_walls),
        "legit_solve_cpu_s": sorted(r["solve_cpu_s"] for r in records if r.get("solve_cpu_s")),
        "bot_stats": {k: v for k, v in bot.items() if k != "places"},
        "bot_places_per_bot": [sum(1 for p in bot["places"] if p[2] == b) for b in range(n_bots)],
        "checks": checks,
    })
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    print(summary_line(result))
    for c in checks:
        print(f"  CHECK FAILED: {c}")
    return result


# ---------------------------------------------------------------------------------------------
# Figures.

def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def wait_pct(r, p):
    """The p-th percentile of all legitimate visitors' waits, those never admitted counting as
    longer than any: None when it falls among them (then only a bound is known)."""
    n = r["legit"]
    full = sorted(r["waits"]) + [float("inf")] * (n - len(r["waits"]))
    if not full:
        return None
    k = (n - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, n - 1)
    if full[lo] == float("inf") or (k > lo and full[hi] == float("inf")):
        return None
    return full[lo] + (full[hi] - full[lo]) * (k - lo)


def fmt_wait(r, p):
    v = wait_pct(r, p)
    if v is None:
        return f"> {r['cap_s'] - r['duration_s']:.0f} s (not admitted)"
    return f"{v:.1f} s"


def bot_cpu_per_place(r):
    b = r.get("bot_stats", {})
    places = r.get("bot_places") or 0
    if not places:
        return None, None
    return b.get("rusage_cpu_s", 0) / places, b.get("solve_cpu_s", 0) / places


def summary_line(r):
    if r.get("unsupported"):
        return f"{r['variant']}: not run ({r['unsupported']})"
    share = r["bot_share_first"]
    total, solve_cpu = bot_cpu_per_place(r)
    s = (f"{r['variant']}: bots {r['bots_in_first']}/{r['first_counted']} of the first "
         f"({100 * share:.1f} %), bot places {r['bot_places']}, legit admitted "
         f"{r['legit_admitted']}/{r['legit']}, wait median {fmt_wait(r, 50)}, p90 {fmt_wait(r, 90)}, "
         f"legit errors {r['legit_errors']}, bot 429s {r['bot_stats'].get('limited', 0)}")
    if total is not None:
        s += f", bot CPU {total * 1000:.2f} ms/place (solving {solve_cpu * 1000:.2f} ms)"
    return s


def load(out_dir):
    results = {}
    for v in VARIANTS:
        p = os.path.join(out_dir, f"{v}.json")
        if os.path.exists(p):
            with open(p) as f:
                results[v] = json.load(f)
    return results


def check(target, out_dir):
    results = load(out_dir)
    bad = []
    for v, r in results.items():
        print(summary_line(r))
        if r.get("unsupported"):
            continue
        bad += [f"{v}: {c}" for c in r["checks"]]
        if r["legit_limited"]:
            bad.append(f"{v}: {r['legit_limited']} legitimate visitors refused by the join limit")
        if r["legit_places"] != r["legit"]:
            bad.append(f"{v}: {r['legit'] - r['legit_places']} legitimate visitors got no place: {r['legit_errors']}")
        if v == "baseline" and (r["bot_places"] or r["legit_admitted"] != r["legit"]):
            bad.append(f"{v}: {r['legit_admitted']} of {r['legit']} admitted")
        if v.startswith("penalty") and not r.get("bot_places_ended"):
            bad.append(f"{v}: no bot place was ended by the penalty")
        if v in ("limit", "penalty", "penalty_prequeue", "limit_pow16"):
            if not r["bot_stats"].get("limited"):
                bad.append(f"{v}: no bot was ever refused 429 too_many_joins")
            burst, per_min = LIMIT["burst"], LIMIT["per_client_per_min"]
            most = burst + per_min * r["duration_s"] / 60.0 + 1
            over = [n for n in r["bot_places_per_bot"] if n > most]
            if over:
                bad.append(f"{v}: a bot took {max(over)} places, more than the {most:.0f} its allowance gives")
        if v == "bots" and r["bot_places"] <= r["legit"]:
            bad.append(f"bots: only {r['bot_places']} bot places without a defence")
        if v.startswith("pow") and not r["bot_stats"].get("solves"):
            bad.append(f"{v}: the bots solved no challenge")
    for b in bad:
        print(f"FAILED: {b}")
    return 1 if bad else 0


TARGET_TITLES = {"origin": "the origin on its embedded store", "redis": "the origin on Redis (AOF, fsync every second)",
                 "edge": "the edge under wrangler dev, driven by the origin's scheduler"}


def machine():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.0f} GiB"
    with open("/etc/os-release") as f:
        osname = dict(l.strip().split("=", 1) for l in f if "=" in l).get("PRETTY_NAME", "").strip('"')
    return (f"{os.cpu_count()} vCPUs ({cpu}), {mem}, {osname}, Linux {platform.release()}; "
            f"Python {platform.python_version()} driver on the same machine")


def secs(v):
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s"


def kept_rows(old_section):
    """The table rows and notes of an earlier report, by variant, with the date it was written."""
    rows, notes = {}, {}
    date = re.search(r"on (\d{4}-\d{2}-\d{2})\. Machine: ([^\n]*?)\.\n", old_section or "")
    for line in (old_section or "").splitlines():
        for v in VARIANTS:
            for title in [TITLES[v]] + OLD_TITLES.get(v, []):
                m = re.match(rf"\| {re.escape(title)}( \(run of [^)]*\))? \|", line)
                if m and "not run" not in line.split("|")[2]:
                    when = m.group(1) or f" (run of {date.group(1) if date else 'before'})"
                    rows[v] = f"| {TITLES[v]}{when} |" + line[m.end():]
            if line.startswith(f"- {v}:") or line.startswith(f"- {v} ("):
                notes.setdefault(v, []).append(line)
    kept_from = re.search(r"Rows marked with an earlier run's date[^\n]*", old_section or "")
    if kept_from:
        machine_then = kept_from.group(0)
    elif date:
        machine_then = (f"Rows marked with an earlier run's date are kept from the report of "
                        f"{date.group(1)} (machine then: {date.group(2)}).")
    else:
        machine_then = None
    return rows, notes, machine_then


def section(target, results, command, old_section=None, base_summary=None):
    rs = [r for r in results.values()]
    any_r = next((r for r in rs if not r.get("unsupported")), rs[0])
    base = results.get("baseline")
    old_rows, old_notes, machine_then = kept_rows(old_section)
    lines = [f"<!-- bench:fairness:{target} -->",
             f"### Fairness under attack: {TARGET_TITLES[target]}", "",
             f"Written by `{command}` on {any_r.get('date', datetime.date.today().isoformat())}. "
             f"Machine: {machine()}.", "",
             f"{any_r['legit']} legitimate visitors over {any_r['duration_s']:.0f} s, each its own "
             f"address; bots: {any_r.get('bots') or 20} addresses, {any_r['bot_conns']} connections each"
             + (f", at most {any_r['bot_rate']:g} joins/s a connection" if any_r.get("bot_rate") else "")
             + f", joining for the {any_r['duration_s']:.0f} s. Room: one shard, "
             f"admit_per_minute {any_r['room']['admit_per_minute']}, max_active {any_r['room']['max_active']}. "
             f"Client addresses by {dict(xff='X-Forwarded-For (127.0.0.1 trusted)', cf='CF-Connecting-IP', bind='source address (127.0.0.0/8)')[any_r['addr_mode']]}. "
             f"Waits from arrival (before any solving) to the poll that saw the admission; a visitor "
             f"not admitted {any_r['cap_s']:.0f} s after the start counts as waiting longer than any.", "",
             f"| Variant | Bot share of the first {any_r['first']} admissions | Bot places | Bot joins refused (429) | "
             f"Legit admitted | Legit wait p50 | p90 | Extra p50 / p90 vs baseline | Bot CPU per place (of it solving) | Legit solving, wall p50 / p90 (CPU p50) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    if any(v not in results and v in old_rows for v in VARIANTS) and machine_then:
        lines[-2:-2] = [machine_then, ""]
    for v in VARIANTS:
        r = results.get(v)
        if r is None and v in old_rows:
            lines.append(old_rows[v])
            continue
        if r is None:
            lines.append(f"| {TITLES[v]} | not run | | | | | | | | |")
            continue
        if r.get("unsupported"):
            lines.append(f"| {TITLES[v]} | not run: the target refused the room (no proof of work yet) | | | | | | | | |")
            continue
        extra = ""
        if base and v != "baseline" and not base.get("unsupported"):
            parts = []
            for p in (50, 90):
                a, b = wait_pct(r, p), wait_pct(base, p)
                parts.append("-" if b is None else (f"> {r['cap_s'] - r['duration_s'] - b:+.0f} s" if a is None else f"{a - b:+.1f} s"))
            extra = " / ".join(parts)
        elif v != "baseline" and (base_summary or {}).get("p50") is not None:
            # Against the baseline of an earlier run, as the chart's data kept it.
            parts = []
            for p in (50, 90):
                a, b = wait_pct(r, p), base_summary[f"p{p}"]
                parts.append("-" if b is None else (f"> {r['cap_s'] - r['duration_s'] - b:+.0f} s" if a is None else f"{a - b:+.1f} s"))
            extra = " / ".join(parts)
        total, solve_cpu = bot_cpu_per_place(r)
        cpu = "" if total is None else (f"{total * 1000:.2f} ms ({solve_cpu * 1000:.2f} ms)" if solve_cpu
                                        else f"{total * 1000:.2f} ms (no challenge)")
        lsw = r.get("legit_solve_wall_s") or []
        lsc = r.get("legit_solve_cpu_s") or []
        lsolve = (f"{secs(percentile(lsw, 50))} / {secs(percentile(lsw, 90))} ({secs(percentile(lsc, 50))})"
                  if lsw else "")
        lines.append(
            f"| {TITLES[v]} | **{100 * r['bot_share_first']:.1f} %** ({r['bots_in_first']} of {r['first_counted']}) "
            f"| {r['bot_places']:,} | {r['bot_stats'].get('limited', 0):,} | {r['legit_admitted']} of {r['legit']} "
            f"| {fmt_wait(r, 50)} | {fmt_wait(r, 90)} | {extra} | {cpu} | {lsolve} |")
    lines.append("")
    notes = [line for v in VARIANTS if v not in results for line in old_notes.get(v, [])]
    for v, r in results.items():
        if r.get("unsupported"):
            continue
        if r.get("bot_places_ended") or r.get("bot_admissions_ended"):
            notes.append(f"- {v}: the penalty ended {r['bot_places_ended']:,} bot places; "
                         f"{r['bot_admissions_ended']} admissions went to places that were ended "
                         f"afterwards, counted as bot admissions among the first {r['first']}.")
        if r["checks"]:
            notes.append(f"- {v}: checks failed: {'; '.join(r['checks'])}.")
        if r["legit_errors"]:
            notes.append(f"- {v}: legitimate visitors' failures: {r['legit_errors']}.")
        b = r.get("bot_stats", {})
        if b.get("other") or b.get("errors") or b.get("challenge_failed"):
            notes.append(f"- {v}: bots' other answers {b.get('other')}, connection errors {b.get('errors')}, "
                         f"challenge_failed {b.get('challenge_failed')}.")
        if b.get("solves"):
            total, solve_cpu = bot_cpu_per_place(r)
            notes.append(f"- {v}: the bots' process solved {b['solves']:,} challenges with "
                         f"{b['solve_cpu_s']:.1f} s of CPU ({b['rusage_cpu_s']:.1f} s in all) in {b['wall_s']:.0f} s: "
                         f"{b['rusage_cpu_s'] / b['wall_s']:.2f} of a core, so about "
                         f"{1.0 / total:,.0f} places per second per core of a bot.")
        if r.get("legit_poll_failures"):
            notes.append(f"- {v}: {r['legit_poll_failures']} status polls failed (HTTP "
                         f"{', '.join(map(str, r['legit_poll_failure_codes']))}; 599: no answer in "
                         f"{TIMEOUT_S:.0f} s) and were tried again a second later, as the waiting page does.")
        if r.get("legit_challenge_retried"):
            notes.append(f"- {v}: {r['legit_challenge_retried']} legitimate visitors' solutions refused and "
                         f"solved again.")
        resent = r.get("legit_resent_503", 0) + b.get("resent_503", 0)
        if resent:
            notes.append(f"- {v}: {resent} joins sent again after wrangler's proxy 503 (workers-sdk#14641).")
    if notes:
        lines += ["Notes from the runs:", ""] + notes + [""]
    lines.append(f"<!-- /bench:fairness:{target} -->")
    return "\n".join(lines)


def report(target, out_dir, bench_md, chart, data_path, command):
    results = load(out_dir)
    with open(bench_md) as f:
        md = f.read()
    pat = re.compile(rf"<!-- bench:fairness:{target} -->.*?<!-- /bench:fairness:{target} -->", re.S)
    old = pat.search(md)
    kept = {}
    if os.path.exists(data_path):
        with open(data_path) as f:
            kept = json.load(f).get(target, {})
    text = section(target, results, command, old.group(0) if old else None,
                   None if "baseline" in results else kept.get("baseline"))
    if pat.search(md):
        md = pat.sub(lambda _: text, md)
    else:
        marker = "<!-- /bench:fairness:targets -->"
        if marker in md:
            md = md.replace(marker, text + "\n\n" + marker)
        else:
            md = md.rstrip("\n") + "\n\n" + text + "\n"
    with open(bench_md, "w") as f:
        f.write(md)
    # The chart's data: what each target's last run measured (kept in the repository, so that one
    # target's run redraws the chart with the others').
    data = {}
    if os.path.exists(data_path):
        with open(data_path) as f:
            data = json.load(f)
    data[target] = data.get(target, {})
    data[target].update({v: {"share": None if r.get("unsupported") else r["bot_share_first"],
                        "first": r["first"],
                        "p50": None if r.get("unsupported") else wait_pct(r, 50),
                        "p90": None if r.get("unsupported") else wait_pct(r, 90),
                        "cap": r["cap_s"] - r["duration_s"]}
                    for v, r in results.items()})
    with open(data_path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    svg_chart(chart, data)


COLORS = {"origin": "#1d4ed8", "redis": "#b45309", "edge": "#15803d"}


def svg_chart(path, data):
    """Per variant, one bar per target: the bots' share of the first admissions (left), and the
    legitimate visitors' median wait with a tick at p90 (right)."""
    width, height, pad = 1000, 330, 50
    targets = [t for t in ("origin", "redis", "edge") if t in data]
    variants = list(VARIANTS)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="system-ui, sans-serif" font-size="11">',
             '<rect width="100%" height="100%" fill="#fff"/>',
             '<text x="10" y="16" font-size="13" font-weight="bold">Fairness under attack: '
             'bots\' share of the first admissions, and legitimate visitors\' wait</text>']
    col_w = width // 2
    panel_h = height - 2 * pad - 50
    for col, (title, key, v_max, unit) in enumerate([
            ("bot share of the first admissions (%)", "share", 100.0, "%"),
            ("legitimate visitors' wait, median (bar) and p90 (tick), s", "p50", None, "s")]):
        x0, y0 = col * col_w + pad, pad + 20
        w = col_w - pad - 20
        if v_max is None:
            vals = [d.get(k) for t in targets for d in data[t].values() for k in ("p50", "p90", "cap")]
            v_max = max([v for v in vals if v is not None] + [1]) * 1.1
        parts.append(f'<text x="{x0}" y="{y0 - 18}">{title}</text>')
        if key == "share":
            # The goal, and what the recommended limit leaves to 20 addresses at once.
            firsts = [d["first"] for t in targets for d in data[t].values() if d.get("first")]
            marks = [(1.0, "goal 1 %", "#15803d")]
            if firsts:
                floor = 100.0 * 20 * LIMIT["burst"] / max(firsts)
                marks.append((floor, f"limit floor {floor:.0f} %", "#b91c1c"))
            for val, label, color in marks:
                ty = y0 + panel_h - panel_h * val / v_max
                parts.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="{color}" '
                             f'stroke-dasharray="4 3"/><text x="{x0 + 4}" y="{ty - 3:.1f}" text-anchor="start" '
                             f'fill="{color}" font-size="9">{label}</text>')
        for i in range(5):
            ty = y0 + panel_h - panel_h * i / 4
            parts.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e5e7eb"/>'
                         f'<text x="{x0 - 4}" y="{ty + 4:.1f}" text-anchor="end">{v_max * i / 4:.0f}</text>')
        group_w = w / len(variants)
        bar_w = (group_w - 10) / max(1, len(targets))
        for g, v in enumerate(variants):
            gx = x0 + g * group_w + 5
            parts.append(f'<text x="{gx + (group_w - 10) / 2:.1f}" y="{y0 + panel_h + 14}" text-anchor="middle">{v}</text>')
            for k, t in enumerate(targets):
                d = data[t].get(v)
                bx = gx + k * bar_w
                if d is None or d.get("share") is None:
                    parts.append(f'<text x="{bx + bar_w / 2:.1f}" y="{y0 + panel_h - 4}" text-anchor="middle" '
                                 f'fill="#9ca3af" font-size="9">n/a</text>')
                    continue
                if key == "share":
                    val, label = 100.0 * d["share"], f"{100.0 * d['share']:.0f}"
                    censored = False
                else:
                    censored = d["p50"] is None
                    val = d["cap"] if censored else d["p50"]
                    label = f">{val:.0f}" if censored else f"{val:.0f}"
                bh = panel_h * min(val, v_max) / v_max
                fill = COLORS[t]
                opacity = ' fill-opacity="0.35"' if censored else ""
                parts.append(f'<rect x="{bx:.1f}" y="{y0 + panel_h - bh:.1f}" width="{bar_w - 2:.1f}" '
                             f'height="{bh:.1f}" fill="{fill}"{opacity}/>')
                parts.append(f'<text x="{bx + bar_w / 2:.1f}" y="{y0 + panel_h - bh - 3:.1f}" '
                             f'text-anchor="middle" font-size="9">{label}</text>')
                if key == "p50":
                    p90 = d["p90"] if d["p90"] is not None else d["cap"]
                    ty = y0 + panel_h - panel_h * min(p90, v_max) / v_max
                    parts.append(f'<line x1="{bx:.1f}" x2="{bx + bar_w - 2:.1f}" y1="{ty:.1f}" y2="{ty:.1f}" '
                                 f'stroke="#111" stroke-width="2"/>')
        for k, t in enumerate(targets):
            lx = x0 + 8 + k * 70
            parts.append(f'<rect x="{lx}" y="{y0 + panel_h + 26}" width="10" height="10" fill="{COLORS[t]}"/>'
                         f'<text x="{lx + 14}" y="{y0 + panel_h + 35}">{t}</text>')
    parts.append(f'<text x="{pad}" y="{height - 8}" fill="#6b7280">pale bars: the median visitor was '
                 f'not admitted before the run ended (a lower bound); n/a: not run; limit floor: '
                 f'20 bot addresses x burst {LIMIT["burst"]} of the first admissions</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    cmd = sys.argv[1]
    if cmd == "preflight":
        problem = asyncio.run(preflight(sys.argv[2], sys.argv[3], sys.argv[4]))
        if problem:
            sys.exit(f"preflight: {problem}")
        print(f"preflight: two clients told apart by {sys.argv[4]}, the join limit refuses with 429")
    elif cmd == "run":
        asyncio.run(run_variant(*sys.argv[2:7]))
    elif cmd == "report":
        report(*sys.argv[2:8])
    elif cmd == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
