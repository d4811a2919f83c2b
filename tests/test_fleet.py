"""The fleet's view and the driver's node watch, on one local Ray (fast; the node-loss
scenarios on several raylets are in test_spot.py, `make test-spot`)."""

from __future__ import annotations

import time

import pytest

from persona_gen.cli.run_cmd import state_table
from persona_gen.engines.base import ChatRequest, Message, Sampling
from persona_gen.errors import EXIT_CAPACITY, CapacityLost, exit_code_for, one_line
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.pipeline.engine_host import EngineHosts, RemoteEngine
from persona_gen.pipeline.fleet import FleetView


def test_a_view_sends_blocks_only_to_hosts_on_live_nodes_that_are_not_draining() -> None:
    view = FleetView(hosts={"m/0": "n1", "m/1": "n2", "m/2": None, "m/3": "n3"},
                     dead=frozenset({"n3"}), draining={"n2": 0})
    assert [view.usable(f"m/{i}") for i in range(4)] == [True, False, False, False]
    # A draining node's host still serves when no other is up.
    assert [view.up(f"m/{i}") for i in range(4)] == [True, True, False, False]
    # A host placed since the driver's last look is taken as up (it answered `ready`).
    assert view.usable("m/9") and view.up("m/9")


def test_capacity_lost_exits_5_with_the_setting_named() -> None:
    err = CapacityLost("no engine alive for 20 s", source="pipeline.capacity_wait_s")
    assert exit_code_for(err) == EXIT_CAPACITY == 5
    assert one_line(err).startswith("pipeline.capacity_wait_s: ")


def test_status_shows_engines_alive_and_planned() -> None:
    state = {"run_id": "r", "status": "running", "phases": [], "attempts": 1,
             "heartbeat_at": "t", "heartbeat_age_s": 1.0, "failure": None, "stages": [],
             "engines": {"alive": 1, "planned": 2, "at": "t"}, "node_losses": 1}
    assert "engines alive 1 / planned 2; nodes lost: 1" in str(state_table(state).title)


def test_pipeline_settings_refuse_a_negative_budget() -> None:
    with pytest.raises(ValueError, match="node_loss_budget"):
        PipelineConfig(node_loss_budget=-1)
    assert PipelineConfig().capacity_wait_s == 900


@pytest.mark.ray
def test_the_watch_sees_every_engine_alive_and_calls_go_through_the_fleet(ray_local) -> None:
    seen: list[tuple[int, int]] = []
    cfg = PipelineConfig(actors=2, num_cpus_per_actor=0.25)
    with EngineHosts(cfg, "fleet", log_json=False,
                     on_capacity=lambda losses, alive, planned: seen.append((alive, planned))
                     ) as hosts:
        engines = hosts.get("echo")
        assert hosts.watch is not None
        deadline = time.monotonic() + 30
        while hosts.watch.alive < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert (hosts.watch.alive, hosts.watch.planned) == (2, 2)
        assert seen and seen[-1] == (2, 2) and not hosts.watch.losses
        engine = RemoteEngine("echo", engines, 1, fleet=hosts.fleet())
        req = ChatRequest(id="a", messages=[Message(role="user", content="hi")],
                          sampling=Sampling(max_tokens=8))
        (res,) = engine.generate([req])
        assert res.error is None and res.text and engine.resent == 0
        assert hosts.verdict is None
