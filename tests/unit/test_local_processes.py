"""Starting the runtime as a child process: a port chosen free may be taken before the runtime binds it."""

import pytest

from local.processes import PortTaken, RuntimeProcess, start_serving


class Attempt(RuntimeProcess):
    """A runtime start that fails with PortTaken while `taken` holds ports, without starting any process."""

    taken = 0
    started = 0

    def __init__(self) -> None:  # no process: what start_serving does with an attempt is under test
        Attempt.started += 1

    def wait_until_serving(self, timeout_seconds: float = 90.0) -> None:
        if Attempt.taken:
            Attempt.taken -= 1
            raise PortTaken("local: cannot listen on 127.0.0.1:39407")


@pytest.fixture(autouse=True)
def fresh() -> None:
    Attempt.taken = Attempt.started = 0


def test_a_taken_port_is_retried_on_fresh_ports() -> None:
    Attempt.taken = 2

    assert isinstance(start_serving(Attempt), Attempt)
    assert Attempt.started == 3


def test_ports_taken_every_time_fail_after_the_last_attempt() -> None:
    Attempt.taken = 5

    with pytest.raises(PortTaken):
        start_serving(Attempt, attempts=3)
    assert Attempt.started == 3
