"""A real Redis Cluster on loopback for tests: six redis-server processes (three masters, three replicas)
joined with `redis-cli --cluster create`; Debian's redis-server and redis-tools (Redis 7)."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

CLUSTER_PACKAGES = "redis-server redis-tools"
NODE_TIMEOUT_MS = 1000  # a master silent this long is failed over to its replica


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, so at most 55535) is free too."""
    while True:
        port = random.randint(20000, 45000)
        if _bindable(port) and _bindable(port + 10000):
            return port


def missing_tools() -> list[str]:
    return [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]


class RedisClusterNodes:
    """masters x (1 + replicas) redis-server processes with cluster mode on, in `root`."""

    def __init__(self, root: Path, masters: int = 3, replicas: int = 1) -> None:
        self.root = Path(root)
        self.masters = masters
        self.replicas = replicas
        self.ports: list[int] = []
        while len(self.ports) < masters * (1 + replicas):
            if (port := _free_cluster_port()) not in self.ports:
                self.ports.append(port)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def _start_node(self, port: int) -> None:
        folder = self.root / str(port)
        folder.mkdir(parents=True, exist_ok=True)
        args = [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(folder),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--appendonly", "no",
            "--save", "",
            "--logfile", "redis.log",
        ]  # fmt: skip
        self.processes[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self, timeout_s: float = 30.0) -> RedisClusterNodes:
        try:
            return self._start(timeout_s)
        except BaseException:
            self.stop()  # never leave nodes behind
            raise

    def _start(self, timeout_s: float) -> RedisClusterNodes:
        for port in self.ports:
            self._start_node(port)
        deadline = time.monotonic() + timeout_s
        for port in self.ports:
            self._wait(lambda port=port: self.node(port).ping(), deadline)
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas)],
            input=b"yes\n",
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )
        self._wait(self.healthy, deadline)
        return self

    def healthy(self) -> bool:
        """Every live node sees the cluster ok, and every master has its replicas in sync."""
        for port in self.live_ports():
            node = self.node(port)
            if node.cluster("info").get("cluster_state") != "ok":
                return False
            info = node.info("replication")
            if info["role"] == "master" and info.get("connected_slaves", 0) < self.replicas:
                return False
            if info["role"] == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def live_ports(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def master_ports(self) -> list[int]:
        return [port for port in self.live_ports() if self.node(port).info("replication")["role"] == "master"]

    def port_of(self, key: str) -> int:
        """The port of the master serving `key`'s slot now."""
        for port in self.master_ports():
            try:
                self.node(port).exists(key)
                return port
            except redis.ResponseError:  # MOVED: another master serves it
                continue
        raise LookupError(f"no master serves {key}")

    def replica_of(self, master: int) -> int:
        info = self.node(master).info("replication")
        return int(info["slave0"]["port"])

    def pause(self, port: int) -> None:
        """SIGSTOP a node: it neither answers nor reads its replication stream until resume()."""
        self.processes[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.processes[port].send_signal(signal.SIGCONT)

    def kill(self, port: int) -> None:
        """SIGKILL one node, like a host losing power."""
        self.processes[port].kill()
        self.processes[port].wait(10)

    def flushall(self) -> None:
        for port in self.master_ports():
            self.node(port).flushall()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)

    @staticmethod
    def _wait(condition: object, deadline: float) -> None:
        while True:
            try:
                if condition():  # type: ignore[operator]
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not come up in time")
            time.sleep(0.1)


def start_redis_cluster(root: Path) -> RedisClusterNodes:
    """Three masters and three replicas on loopback; skips the test where redis-server/redis-cli are missing."""
    import pytest  # only the tests skip; the benchmark reports what is missing

    if missing := missing_tools():
        pytest.skip(f"Redis Cluster tests need {', '.join(missing)}: apt-get install -y {CLUSTER_PACKAGES}")
    return RedisClusterNodes(root).start()
