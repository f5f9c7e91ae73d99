"""Ingot replicas behind vllm-router (PyPI `vllm-router`, pinned in test.sh), all on loopback:
three `ingot serve` replicas of the default model on the CPU backend, and the router started
by the test with the settings docs/DEPLOY.md recommends.

- A mixed workload through the router with the official `openai` client (plain and streamed
  completions and chats, `n` > 1, streams the client abandons): every request is answered,
  greedy and seeded outputs equal what one replica gives alone, and the abandoned streams are
  aborted on the replicas (every replica ends idle, its KV cache empty).
- Shared-prefix traffic: `cache_aware` sends requests that share a prefix to the replica that
  has it cached, so the prefix-cache hit rate summed over the replicas' /metrics is well above
  that of `round_robin` on the same kind of traffic.
- Replicas going away under load: one stopped with SIGTERM drains (its requests finish, it
  exits 0), one killed with SIGKILL loses only the requests it was running; with the
  documented health-check, retry and circuit-breaker settings no request sent after either
  event fails.
"""

import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from conftest import API_KEY, MODEL, Server, free_port

REPLICA_FLAGS = ("--backend", "cpu", "--kv-cache-memory", "64MiB", "--api-key", API_KEY)

# The router settings docs/DEPLOY.md gives, so that a dead replica costs no new request:
# a failed attempt is retried (on a connection error the router answers itself 500, which
# it retries); the circuit breaker takes the replica out after 2 failures, so a policy that
# keeps choosing it (cache_aware, by prefix) moves on by the third attempt; health checks
# every 2 s keep it out until it answers /health again.
FAILOVER_FLAGS = (
    "--retry-max-retries", "5", "--retry-initial-backoff-ms", "50", "--retry-max-backoff-ms", "1000",
    "--cb-failure-threshold", "2", "--cb-timeout-duration-secs", "10",
    "--health-check-interval-secs", "2", "--health-failure-threshold", "2",
)


def router_bin():
    path = shutil.which("vllm-router")
    if path is None:
        pytest.fail("vllm-router is not installed: ./test.sh installs it "
                    "(python3 -m pip install vllm-router==0.1.17)")
    return path


class Router:
    """A vllm-router child process in front of `replicas`."""

    def __init__(self, replicas, policy, *flags):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="vllm-router-", suffix=".log", delete=False)
        cmd = [router_bin(), "--host", "127.0.0.1", "--port", str(self.port),
               "--worker-urls", *[r.url for r in replicas], "--policy", policy,
               "--prometheus-port", str(free_port()), *flags]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm-router exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"vllm-router did not become ready:\n{self.log_text()}")
            time.sleep(0.2)

    def client(self, api_key=API_KEY):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0,
                             timeout=120)

    def log_text(self):
        return Path(self.log.name).read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def replicas():
    started = []
    try:
        for _ in range(3):
            started.append(Server(*REPLICA_FLAGS))
        yield started
    finally:
        for s in started:
            s.stop()


@pytest.fixture
def start_router():
    routers = []

    def start(replicas, policy, *flags):
        r = Router(replicas, policy, *flags)
        routers.append(r)
        return r

    yield start
    for r in routers:
        r.stop()


def direct(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def wait_idle(servers, timeout=30.0):
    """Waits until no replica runs or queues a request and every KV block is free."""
    deadline = time.time() + timeout
    while True:
        busy = [(s.port, m["ingot:num_requests_running"], m["ingot:num_requests_waiting"],
                 m["ingot:kv_cache_usage_perc"]) for s in servers for m in [s.metrics()]]
        if all(b[1:] == (0, 0, 0) for b in busy):
            return
        assert time.time() < deadline, f"replicas not idle after {timeout} s: {busy}"
        time.sleep(0.1)


def summed(servers, name):
    return sum(s.metrics()[name] for s in servers)


PROMPTS = ["The capital of Italy is", "Water boils at", "def fibonacci(n):", "Monday, Tuesday,"]
GREEDY = dict(model=MODEL, max_tokens=10, temperature=0)
SEEDED = dict(model=MODEL, max_tokens=10, temperature=0.9, seed=11, n=2)


def completion_text(client, prompt, **kw):
    return [c.text for c in client.completions.create(prompt=prompt, **kw).choices]


def chat_text(client, prompt):
    r = client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **GREEDY)
    return r.choices[0].message.content


def streamed_chat_text(client, prompt):
    text = ""
    for ch in client.chat.completions.create(messages=[{"role": "user", "content": prompt}],
                                             stream=True, **GREEDY):
        if ch.choices:
            text += ch.choices[0].delta.content or ""
    return text


def abandoned_stream(client, prompt):
    """Reads three chunks of a long stream, then closes it: the replica must abort it."""
    stream = client.completions.create(prompt=prompt, stream=True, model=MODEL, max_tokens=400,
                                       temperature=0, extra_body={"ignore_eos": True})
    got = 0
    for ch in stream:
        got += bool(ch.choices and ch.choices[0].text is not None)
        if got == 3:
            break
    stream.close()
    return got


def test_mixed_workload_through_the_router_matches_one_replica(replicas, start_router):
    one = direct(replicas[0])
    greedy = {p: completion_text(one, p, **GREEDY)[0] for p in PROMPTS}
    chats = {p: chat_text(one, p) for p in PROMPTS[:2]}
    seeded = {p: completion_text(one, p, **SEEDED) for p in PROMPTS[:2]}
    wait_idle(replicas)
    aborts_before = summed(replicas, "ingot:request_success_total[abort]")
    done_before = [s.metrics()["ingot:request_success_total[length]"] for s in replicas]

    router = start_router(replicas, "round_robin", *FAILOVER_FLAGS)
    client = router.client()
    # The router passes the client's key to the replicas, which check it.
    with pytest.raises(openai.AuthenticationError):
        router.client(api_key="wrong").models.list()
    jobs = []
    for p in PROMPTS:
        jobs.append(("greedy", p, lambda p=p: completion_text(client, p, **GREEDY)[0], greedy[p]))
        jobs.append(("n=3", p, lambda p=p: completion_text(client, p, **{**GREEDY, "n": 3}),
                     [greedy[p]] * 3))
    for p in PROMPTS[:2]:
        jobs.append(("chat", p, lambda p=p: chat_text(client, p), chats[p]))
        jobs.append(("chat stream", p, lambda p=p: streamed_chat_text(client, p), chats[p]))
        jobs.append(("abort", p, lambda p=p: abandoned_stream(client, p), 3))
    for p in PROMPTS[:2]:
        jobs.append(("seeded n=2", p, lambda p=p: completion_text(client, p, **SEEDED), seeded[p]))
    random.Random(5).shuffle(jobs)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda job: job[2](), jobs))
    for (kind, prompt, _, want), got in zip(jobs, results):
        assert got == want, f"{kind} {prompt!r} through the router: {got!r} != one replica's {want!r}"

    n_aborts = sum(kind == "abort" for kind, *_ in jobs)
    wait_idle(replicas)
    assert summed(replicas, "ingot:request_success_total[abort]") - aborts_before == n_aborts
    # Round robin spread the work: every replica finished some of it.
    done_after = [s.metrics()["ingot:request_success_total[length]"] for s in replicas]
    assert all(a > b for a, b in zip(done_after, done_before)), (done_before, done_after)


def shared_prefix_hit_rate(replicas, router, seed):
    """Sends 3 requests for each of 3 long random prefixes, one after another, and returns
    the prefix-cache hit rate over those requests, summed from the replicas' /metrics."""
    rng = random.Random(seed)
    words = "river stone cloud maple quiet lantern orbit velvet harbor ember cedar falcon".split()
    prefixes = [" ".join(rng.choice(words) for _ in range(96)) for _ in range(3)]
    client = router.client()
    q0 = summed(replicas, "ingot:prefix_cache_queries_total")
    h0 = summed(replicas, "ingot:prefix_cache_hits_total")
    for prefix in prefixes:
        for j in range(3):
            client.completions.create(prompt=f"{prefix}\nQuestion {j}: which word comes first?",
                                      model=MODEL, max_tokens=1, temperature=0)
    queries = summed(replicas, "ingot:prefix_cache_queries_total") - q0
    hits = summed(replicas, "ingot:prefix_cache_hits_total") - h0
    assert queries > 9 * 96, queries
    return hits / queries


def test_cache_aware_routing_raises_the_prefix_cache_hit_rate(replicas, start_router):
    rr = start_router(replicas, "round_robin", *FAILOVER_FLAGS)
    rr_rate = shared_prefix_hit_rate(replicas, rr, seed=1)
    rr.stop()
    ca = start_router(replicas, "cache_aware", *FAILOVER_FLAGS)
    ca_rate = shared_prefix_hit_rate(replicas, ca, seed=2)
    # Per prefix: round robin sends its 3 requests to the 3 replicas in turn (no hit);
    # cache_aware sends them to one (the prefix's blocks hit on 2 of 3).
    assert ca_rate > 0.4 and ca_rate > rr_rate + 0.3, (ca_rate, rr_rate)


class Load:
    """Client threads sending short requests through the router until stopped, each request
    recorded as (start, end, error or None)."""

    def __init__(self, router, threads=3):
        self.client = router.client()
        self.records = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.loop, args=(i,)) for i in range(threads)]
        for t in self.threads:
            t.start()

    def loop(self, i):
        k = 0
        while not self.stopping.is_set():
            start = time.monotonic()
            error = None
            try:
                prompt = f"{PROMPTS[(i + k) % len(PROMPTS)]} ({i}.{k})"
                if k % 2:
                    text = "".join(c.choices[0].text for c in self.client.completions.create(
                        prompt=prompt, stream=True, **GREEDY) if c.choices)
                else:
                    text = self.client.completions.create(prompt=prompt, **GREEDY).choices[0].text
                assert text, "empty completion"
            except Exception as e:  # noqa: BLE001 - every failure is recorded and judged below
                error = repr(e)
            with self.lock:
                self.records.append((start, time.monotonic(), error))
            k += 1

    def wait_for(self, after, count, timeout=90):
        """Waits until `count` requests sent after `after` (time.monotonic) have ended."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                done = sum(r[0] > after for r in self.records)
            if done >= count:
                return
            assert time.monotonic() < deadline, f"only {done} of {count} requests ended in {timeout} s"
            time.sleep(0.1)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=120)
        return self.records


def test_a_replica_stopped_or_killed_under_load_costs_no_new_request(start_server, start_router):
    # The key from the environment this time (as a Kubernetes secret gives it).
    flags = [f for f in REPLICA_FLAGS if f not in ("--api-key", API_KEY)]
    a, b, c = (start_server(*flags, env={"INGOT_API_KEY": API_KEY}) for _ in range(3))
    router = start_router([a, b, c], "cache_aware", *FAILOVER_FLAGS)
    with pytest.raises(openai.AuthenticationError):
        router.client(api_key="wrong").completions.create(prompt="Hi", **GREEDY)
    load = Load(router)
    load.wait_for(after=0, count=3)

    t_term = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(timeout=60) == 0, a.log_text()
    load.wait_for(after=t_term, count=4)

    t_kill = time.monotonic()
    b.proc.kill()
    b.proc.wait()
    load.wait_for(after=t_kill, count=6)
    records = load.stop()

    failed = [r for r in records if r[2] is not None]
    # Only requests running on the killed replica may fail; nothing sent after it died may.
    stray = [r for r in failed if not r[0] < t_kill < r[1]]
    assert not stray, f"requests failed outside the kill:\n{stray}\nrouter log:\n{router.log_text()[-4000:]}"
    assert len(failed) <= 3, failed
    # The load went on through both events (so the check above had requests to judge).
    after_term = [r for r in records if t_term < r[0] < t_kill]
    after_kill = [r for r in records if r[0] > t_kill]
    assert len(after_term) >= 4 and len(after_kill) >= 6, (len(after_term), len(after_kill))
    wait_idle([c])


TINY = str(Path(__file__).resolve().parents[2] / "testdata" / "tiny-llama")
FAMILIES = [
    "The old lighthouse keeper climbed the winding stairs every evening to light the lamp, "
    "and the ships far out at sea",
    "In the small mountain village the baker rose before dawn to knead the dough, while the "
    "river below",
    "Our quarterly report shows that revenue grew in every region except the north, where "
    "the new warehouse",
]


def served_by(replicas, send):
    """Runs `send` and returns the index of the one replica whose prompt count moved."""
    before = [s.metrics()["ingot:prompt_tokens_total"] for s in replicas]
    send()
    moved = [i for i, s in enumerate(replicas)
             if s.metrics()["ingot:prompt_tokens_total"] != before[i]]
    assert len(moved) == 1, moved
    return moved[0]


def test_kv_aware_sends_a_shared_prefix_to_the_replica_holding_it(start_server, start_router):
    """vllm-router's `kv_aware` fed by Ingot's KV events: a prefix computed on replica i (sent
    to it directly, so only its events can tell the router) draws every later request that
    shares it to replica i, and those requests hit i's prefix cache. The tiny Llama fixture
    keeps three replicas cheap; the router tokenizes text prompts with the fixture's own
    tokenizer (--kv-event-model), as Ingot does."""
    replicas, sources = [], []
    for _ in range(3):
        kv_port = free_port()
        s = start_server("--model", TINY, "--served-model-name", "tiny", "--backend", "cpu",
                         "--kv-cache-memory", "16MiB",
                         "--kv-events-endpoint", f"tcp://127.0.0.1:{kv_port}")
        replicas.append(s)
        sources += ["--kv-event-source", f"{s.url}=tcp://127.0.0.1:{kv_port}"]
    router = start_router(replicas, "kv_aware", "--kv-event-model", TINY, *sources)
    client = router.client()
    direct_clients = [direct(s) for s in replicas]
    tiny = dict(model="tiny", max_tokens=1, temperature=0)

    def through_router(prompt):
        return lambda: client.completions.create(prompt=prompt, **tiny)

    # Each family's prefix is computed on a different replica, directly. The router's
    # subscriptions may take a moment to reach the replicas (ZeroMQ drops what a subscriber
    # has not yet asked for), so a warm-up prefix is placed until the router follows it.
    deadline = time.time() + 30
    for i in range(3):
        while True:
            warm = f"Warm-up number {random.random()} for replica {i}: " + FAMILIES[i]
            direct_clients[i].completions.create(prompt=warm, **tiny)
            time.sleep(0.3)
            if served_by(replicas, through_router(warm + " again")) == i:
                break
            assert time.time() < deadline, router.log_text()[-4000:]
    for i, family in enumerate(FAMILIES):
        direct_clients[(i + 1) % 3].completions.create(prompt=family, **tiny)
    time.sleep(0.3)

    hits_before = [s.metrics()["ingot:prefix_cache_hits_total"] for s in replicas]
    for round_ in range(3):
        for i, family in enumerate(FAMILIES):
            got = served_by(replicas, through_router(f"{family} number {round_}"))
            assert got == (i + 1) % 3, (round_, i, got)
    hits = [s.metrics()["ingot:prefix_cache_hits_total"] - hits_before[k]
            for k, s in enumerate(replicas)]
    # Every routed request found its family's full blocks (each family is 61 to 63 tokens of
    # the fixture's tokenizer: 3 blocks of 16).
    assert all(h >= 3 * 48 for h in hits), hits
