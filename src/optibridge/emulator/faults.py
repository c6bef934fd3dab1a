"""Fault injection rules and the decision of what to inflict on one request (pure).

A rule matches a function (or "*") and optionally a tenant; while active (triggers left, before
its deadline) it fires with its probability, drawn from a seeded generator so a failing run can
be repeated. When it fires it adds latency, and may answer with one of its status codes, or with
200 and a bare JSON string such as "Error: ..." instead of the call's answer (`error_string`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class FaultRule:
    fault_id: int
    function: str = "*"
    tenant_id: str | None = None
    status_codes: tuple[int, ...] = ()
    probability: float = 1.0
    remaining: int | None = None
    until: float | None = None
    latency_s: float = 0.0
    retry_after_s: float | None = None
    error_string: str | None = None
    fired: int = 0

    def matches(self, function: str, tenant_id: str | None) -> bool:
        return (self.function == "*" or self.function == function.lower()) and (
            self.tenant_id is None or self.tenant_id == tenant_id
        )

    def active(self, now: float) -> bool:
        return (self.remaining is None or self.remaining > 0) and (self.until is None or now < self.until)


@dataclass(slots=True)
class FaultDecision:
    latency_s: float = 0.0
    status: int | None = None
    retry_after_s: float | None = None
    error_string: str | None = None
    rule_ids: list[int] = field(default_factory=list)


class FaultBook:
    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._rules: dict[int, FaultRule] = {}
        self._next_id = 1

    def add(
        self,
        *,
        function: str = "*",
        tenant_id: str | None = None,
        status_codes: tuple[int, ...] = (),
        probability: float = 1.0,
        times: int | None = None,
        duration_s: float | None = None,
        latency_s: float = 0.0,
        retry_after_s: float | None = None,
        error_string: str | None = None,
        now: float = 0.0,
    ) -> FaultRule:
        rule = FaultRule(
            fault_id=self._next_id,
            function=function.lower(),
            tenant_id=tenant_id,
            status_codes=tuple(status_codes),
            probability=probability,
            remaining=times,
            until=None if duration_s is None else now + duration_s,
            latency_s=latency_s,
            retry_after_s=retry_after_s,
            error_string=error_string,
        )
        self._rules[rule.fault_id] = rule
        self._next_id += 1
        return rule

    def remove(self, fault_id: int) -> bool:
        return self._rules.pop(fault_id, None) is not None

    def clear(self) -> None:
        self._rules.clear()

    def rules(self) -> list[FaultRule]:
        return list(self._rules.values())

    def reseed(self, seed: int) -> None:
        self._rng.seed(seed)

    def decide(self, function: str, tenant_id: str | None, now: float) -> FaultDecision:
        decision = FaultDecision()
        if not self._rules:
            return decision
        for rule in list(self._rules.values()):
            if not rule.matches(function, tenant_id) or not rule.active(now):
                continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.remaining is not None:
                rule.remaining -= 1
            decision.rule_ids.append(rule.fault_id)
            decision.latency_s += rule.latency_s
            if decision.status is None and decision.error_string is None:
                if rule.status_codes:
                    decision.status = self._rng.choice(rule.status_codes)
                    decision.retry_after_s = rule.retry_after_s
                elif rule.error_string is not None:
                    decision.error_string = rule.error_string
        return decision
