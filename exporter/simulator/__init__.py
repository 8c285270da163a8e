"""A faithful, scriptable stand-in for Feldera's pipeline-manager REST API (see ``docs/simulator.md``).

>>> from exporter.simulator import ManualClock, Scenario, Simulator
>>> # async with Simulator(Scenario.load("scenario.yaml"), clock=ManualClock()) as sim:
>>> #     sim.url; sim.fail_checkpoint("orders"); sim.advance_clock(15)

Python control methods (all synchronous) are also served as ``POST {sim.url}/_sim/<method>`` with the keyword
arguments as a JSON object body (``GET /_sim/state`` summarises the pipelines).
"""

from exporter.simulator.clock import Clock, ManualClock, SystemClock
from exporter.simulator.faults import Fault
from exporter.simulator.scenario import ConnectorSpec, PipelineSpec, RelationSpec, Scenario, ServerSpec
from exporter.simulator.server import CONTROL_METHODS, Simulator

__all__ = [
    "CONTROL_METHODS",
    "Clock",
    "ConnectorSpec",
    "Fault",
    "ManualClock",
    "PipelineSpec",
    "RelationSpec",
    "Scenario",
    "ServerSpec",
    "Simulator",
    "SystemClock",
]
