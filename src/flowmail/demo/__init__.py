"""``flowmail demo``: realistic traffic for the example workflows, through the HTTP API.

- :mod:`~flowmail.demo.traffic`: contacts and their calls from a seed (pure);
- :mod:`~flowmail.demo.engagement`: what providers and recipients do with sent emails
  (pure);
- :mod:`~flowmail.demo.client`: the API over httpx, with retries;
- :mod:`~flowmail.demo.runner`: the phases against a running installation.
"""

from flowmail.demo.client import ApiClient, ApiFailure, DemoError
from flowmail.demo.engagement import Reaction, SentMessage, react
from flowmail.demo.runner import Demo, DemoOptions, Quiet, Reporter, Summary
from flowmail.demo.traffic import Call, Contact, Plan, build_plan

__all__ = [
    "ApiClient",
    "ApiFailure",
    "Call",
    "Contact",
    "Demo",
    "DemoError",
    "DemoOptions",
    "Plan",
    "Quiet",
    "Reaction",
    "Reporter",
    "SentMessage",
    "Summary",
    "build_plan",
    "react",
]
