"""The journey test framework: run workflows over virtual time with no database.

Use it from pytest::

    from flowmail.simulate import Simulation, load_workflow
"""

from __future__ import annotations

from pathlib import Path

from flowmail.delivery.policy import PolicyConfig, QuietHours
from flowmail.language.loader import load_workflow, parse_workflow
from flowmail.language.models import Workflow
from flowmail.simulate.runner import SimulatedEmail, Simulation, SimulationResult, iso
from flowmail.simulate.scenario import Scenario, ScenarioInvalid, load_scenario


def simulate_scenario(scenario: Scenario, workflows: list[Workflow]) -> SimulationResult:
    """Run a parsed scenario."""
    times = [e.at for e in scenario.events]
    start = scenario.start or (min(times) if times else None)
    if start is None:
        raise ScenarioInvalid("the scenario has no events: give it a 'start'")
    config = scenario.settings
    policy = PolicyConfig(
        max_daily_sends=config.max_daily_sends,
        quiet_hours=QuietHours.parse(config.quiet_hours),
        default_timezone=scenario.timezone,
    )
    sim = Simulation(
        workflows,
        start=start,
        default_timezone=scenario.timezone,
        policy=policy,
        winners=scenario.winners,
    )
    for suppression in scenario.suppressions:
        sim.suppress(suppression.email, suppression.reason, at=suppression.at)
    for consent in scenario.consents:
        sim.consent(consent.contact, consent.topic, consent.status, at=consent.at)
    for contact in scenario.contacts:
        sim.add_contact(
            contact.id,
            email=contact.email,
            timezone=contact.timezone,
            attributes=contact.attributes,
        )
    for event in scenario.events:
        if event.identify is not None:
            sim.identify(event.contact, event.identify, at=event.at)
        else:
            assert event.name is not None
            sim.track(
                event.contact,
                event.name,
                at=event.at,
                properties=event.properties,
                event_id=event.id,
            )
    return sim.run(until=scenario.until)


def simulate_file(path: str | Path) -> SimulationResult:
    """Load and run a scenario file."""
    scenario, workflows = load_scenario(path)
    return simulate_scenario(scenario, workflows)


__all__ = [
    "ScenarioInvalid",
    "SimulatedEmail",
    "Simulation",
    "SimulationResult",
    "iso",
    "load_workflow",
    "parse_workflow",
    "simulate_file",
    "simulate_scenario",
]
