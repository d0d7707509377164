"""Real Redis Clusters for the tests, on this machine: `redis-server` processes in cluster mode on free loopback ports,
each in a folder of its own under the given one, empty and keeping nothing, stopped when the `with` block ends.

- `three_nodes()`: three masters and no replicas, the slots spread over them by `redis-cli --cluster create`. A key's
  slot lives on one node of three: a script or command across two slots fails (CROSSSLOT, or the cluster client's
  own check), and a plain client gets MOVED for most keys. So the boards are run on it through `redis.RedisCluster`.
- `one_node()`: one master holding all 16384 slots, the shape ElastiCache Serverless shows its clients (one virtual
  node): the cluster's rules (no SELECT, one slot per command or script) with nothing to redirect, so the plain
  `redis.Redis` the functions use by default serves it.
"""

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import redis

from local.processes import free_port, stop_process
from local.services import start_redis

SLOTS = 16384
READY_SECONDS = 30.0


@contextmanager
def three_nodes(folder: Path) -> Iterator[str]:
    """A three-master cluster; yields the URL of one of its nodes (a cluster client finds the others)."""
    with _nodes(folder, 3) as urls:
        addresses = [url.removeprefix("redis://").removesuffix("/0") for url in urls]
        redis_cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run(  # noqa: S603 - Redis's own tool, on our nodes
            [redis_cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=READY_SECONDS,
        )
        _wait_until_ready(urls)
        yield urls[0]


@contextmanager
def one_node(folder: Path) -> Iterator[str]:
    """A one-master cluster holding every slot; yields its URL."""
    with _nodes(folder, 1) as urls:
        with redis.Redis.from_url(urls[0]) as node:
            node.execute_command("CLUSTER ADDSLOTSRANGE", 0, SLOTS - 1)
        _wait_until_ready(urls)
        yield urls[0]


@contextmanager
def _nodes(folder: Path, count: int) -> Iterator[list[str]]:
    with ExitStack() as stack:
        urls = []
        for index in range(count):
            node_folder = folder / f"node-{index}"
            node_folder.mkdir(parents=True)
            # The bus port on a free port too: by default it is the node's port + 10000, maybe taken or past 65535.
            bus_port = str(free_port())
            process, url = start_redis(node_folder / "redis.log", cluster_enabled="yes", cluster_port=bus_port)
            stack.callback(stop_process, process)
            urls.append(url)
        yield urls


def _wait_until_ready(urls: list[str]) -> None:
    """Until every node sees every other and every slot served (a node says so a second or two after it is told)."""
    deadline = time.monotonic() + READY_SECONDS
    for url in urls:
        with redis.Redis.from_url(url) as node:
            while True:
                info = node.cluster("INFO")
                if info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == len(urls):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the cluster at {url} is not ready: {info}")
                time.sleep(0.05)
