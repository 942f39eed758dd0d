"""The scoring shell: load an assessment's inputs, run the engine, replace its results.

A recompute locks the assessment rows, so the inputs it reads are exactly those of the revisions
it records; an input change arriving meanwhile waits for the lock, then bumps the revision and
writes a fresh outbox row (enqueued after its commit), so no change is ever lost. The outbox rows
the recompute satisfied are cleared in its own transaction. A batch (a national run) is one
transaction with a handful of queries, not a handful per assessment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.domain.assessment.states import Value
from services.domain.assessment.values import counted_values as counted_values
from services.domain.recompute.jobs import (
    RECOMPUTE_JOB,
    RUN_JOB,
    recompute_job_id,
    run_step_job_id,
)
from services.domain.recompute.service import mark_followers_dirty
from services.domain.webhook import service as webhooks
from services.domain.webhook.jobs import DELIVER_JOB
from services.kit import results_cache
from services.kit.db import run_after_commit
from services.kit.metrics import RECOMPUTED_ASSESSMENTS
from services.kit.queue import Queue
from services.models import Assessment, AssessmentState, RecomputeRun, ResultState
from services.scoring import repository
from services.scoring.engine import (
    Framework,
    InputError,
    Inputs,
    NodeResult,
    Result,
    evaluate,
    evaluate_index,
    link_order,
)
from services.scoring.engine.numbers import decimal_text
from services.scoring.frameworks import link_sources, registry

log = logging.getLogger(__name__)
# Assessments per batch (one transaction). A run keeps two batches in memory at a time (one
# written while the next is scored), so 50 holds what one batch of 100 did before the
# pipeline: `make bench` P5 (peak RSS at 514 regions ÷ at 50) was 1.11–1.12 with 100, 1.06
# with 50; S1's recompute took about 7% longer with 50 (docs/benchmarks.md).
RUN_BATCH = 50
# Batches per run step: a step stays a short, retryable job (a second or two of work on a
# national run) and has batches enough to pipeline (see run_step).
STEP_BATCHES = 10

Outcome = Literal["computed", "current", "gone", "unknown-framework"]


@dataclass(frozen=True, slots=True)
class Recomputed:
    outcome: Outcome
    revision: int = 0
    index: Decimal | None = None
    framework_id: str = ""


async def recompute(
    sessionmaker: async_sessionmaker[AsyncSession],
    assessment_id: uuid.UUID,
    queue: Queue | None,
    *,
    force: bool = False,
) -> Recomputed:
    """Bring one assessment's results up to its current input revision (idempotent)."""
    outcomes = await recompute_many(sessionmaker, [assessment_id], queue, force=force)
    return outcomes.get(assessment_id, Recomputed("gone"))


async def recompute_many(
    sessionmaker: async_sessionmaker[AsyncSession],
    assessment_ids: Sequence[uuid.UUID],
    queue: Queue | None,
    *,
    force: bool = False,
) -> dict[uuid.UUID, Recomputed]:
    """Recompute a batch of assessments in one transaction, each query taken for the batch.

    ``force`` recomputes even results already at the current revision and framework hash.
    """
    return await _recompute_batch(sessionmaker, assessment_ids, queue, force=force)


class _Abandoned(Exception):
    """The batch before this one in a run failed: this one is not written (rolled back)."""


async def _recompute_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
    assessment_ids: Sequence[uuid.UUID],
    queue: Queue | None,
    *,
    force: bool,
    after: asyncio.Future[Any] | None = None,
) -> dict[uuid.UUID, Recomputed]:
    """:func:`recompute_many`; with ``after`` (the run's batch before this one), this one is
    locked, read and scored meanwhile, and written only once that one has committed: a
    run's batches commit in order, and none after one that failed (:class:`_Abandoned`)."""
    async with sessionmaker() as session:
        async with session.begin():
            prepared = await _prepare(session, assessment_ids, force=force)
            if after is not None:
                await asyncio.wait([after])
                if after.cancelled() or after.exception() is not None:
                    raise _Abandoned
            outcomes = await _write(session, prepared, queue)
        await run_after_commit(session)  # enqueue dependents and webhooks of that transaction
        if computed := {o.framework_id for o in outcomes.values() if o.outcome == "computed"}:
            async with session.begin():  # after the commit: cached reads rebuild from here on
                await results_cache.bump(await session.connection(), frameworks=computed)
    for outcome in outcomes.values():
        RECOMPUTED_ASSESSMENTS.labels(outcome.outcome).inc()
    if gone := len(set(assessment_ids)) - len(outcomes):  # deleted meanwhile
        RECOMPUTED_ASSESSMENTS.labels("gone").inc(gone)
    return outcomes


async def _recompute_locked(
    session: AsyncSession,
    assessment_ids: Sequence[uuid.UUID],
    queue: Queue | None,
    *,
    force: bool,
) -> dict[uuid.UUID, Recomputed]:
    return await _write(session, await _prepare(session, assessment_ids, force=force), queue)


@dataclass(slots=True)
class _Prepared:
    """A batch locked, read and scored, not yet written (its transaction still open)."""

    assessments: list[Assessment]
    states: dict[uuid.UUID, ResultState]
    due: list[Assessment]
    rows: repository.ResultText
    result_states: list[dict[str, Any]]
    # Assessments whose index changed, with the new index and predicate: only what the
    # webhooks say, not the result trees (a run keeps two batches in memory at a time).
    changed: list[tuple[Assessment, Decimal | None, str | None]]
    outcomes: dict[uuid.UUID, Recomputed]


# While a run's batch is scored, the previous batch's writes wait on Postgres: scoring hands
# the event loop over this often (assessments) so those writes go on meanwhile.
_YIELD_EVERY = 8


async def _prepare(
    session: AsyncSession, assessment_ids: Sequence[uuid.UUID], *, force: bool
) -> _Prepared:
    """Lock the assessments, read their inputs and score the ones due."""
    frameworks = registry()
    assessments = await repository.lock_assessments(session, assessment_ids)
    states = await repository.result_states(session, [a.id for a in assessments])
    outcomes: dict[uuid.UUID, Recomputed] = {}
    due: list[Assessment] = []
    for assessment in assessments:
        framework = frameworks.get(assessment.framework_id)
        state = states.get(assessment.id)
        if framework is None:
            log.error(
                "assessment %s uses unknown framework %s", assessment.id, assessment.framework_id
            )
            outcomes[assessment.id] = Recomputed("unknown-framework")
        elif (
            not force
            and state is not None
            and state.input_revision >= assessment.input_revision
            and state.framework_hash == framework.content_hash
        ):
            outcomes[assessment.id] = Recomputed(
                "current", assessment.input_revision, state.index_value
            )
        else:
            due.append(assessment)
    inputs = await load_inputs(session, due)
    computed_at = datetime.now(UTC)
    rows = repository.ResultText(computed_at)
    details: dict[tuple[Any, ...], str] = {}
    heads: dict[str, dict[str, tuple[str, str]]] = {}
    result_states: list[dict[str, Any]] = []
    changed: list[tuple[Assessment, Decimal | None, str | None]] = []
    alone_memo: dict[Hashable, tuple[Decimal | None, str | None]] = {}
    for position, assessment in enumerate(due):
        if position % _YIELD_EVERY == _YIELD_EVERY - 1:
            await asyncio.sleep(0)
        framework = frameworks[assessment.framework_id]
        loaded = inputs[assessment.id]
        error: str | None = None
        try:
            result = evaluate(framework, loaded.counted)
        except InputError as exc:
            # An input that no longer fits (e.g. a framework file changed): keep the assessment
            # visible as incomplete with the reason, rather than failing the job forever.
            error = str(exc)
            result = evaluate(framework, Inputs())
        revision, index = assessment.input_revision, result.index.value
        add_result_lines(rows, result, assessment.id, revision, loaded.origins, details, heads)
        alone: dict[Value, tuple[Decimal | None, str | None]] = {}
        for kind in (Value.SELF, Value.VERIFIED):
            inputs_alone = loaded.alone.get(kind)
            if inputs_alone is loaded.counted and error is None:
                alone[kind] = (index, result.index.predicate)  # the same values, the same index
            else:
                alone[kind] = index_alone(framework, inputs_alone, alone_memo)
        result_states.append(
            {
                "assessment_id": assessment.id,
                "input_revision": revision,
                "framework_hash": framework.content_hash,
                "index_value": index,
                "predicate": result.index.predicate,
                "self_index_value": alone[Value.SELF][0],
                "self_predicate": alone[Value.SELF][1],
                "verified_index_value": alone[Value.VERIFIED][0],
                "verified_predicate": alone[Value.VERIFIED][1],
                "complete": result.complete and error is None,
                "computed_at": computed_at,
                "error": error,
            }
        )
        state = states.get(assessment.id)
        if state is None or state.index_value != index:
            changed.append((assessment, index, result.index.predicate))
        outcomes[assessment.id] = Recomputed("computed", revision, index, assessment.framework_id)
    return _Prepared(assessments, states, due, rows, result_states, changed, outcomes)


async def _write(
    session: AsyncSession, prepared: _Prepared, queue: Queue | None
) -> dict[uuid.UUID, Recomputed]:
    """Replace the results of a prepared batch, mark its followers, clear its requests."""
    assessments, states, due = prepared.assessments, prepared.states, prepared.due
    changed, outcomes = prepared.changed, prepared.outcomes
    await repository.replace_results(
        session, [a.id for a in due], prepared.rows, prepared.result_states
    )
    await mark_followers_dirty(session, [assessment for assessment, _, _ in changed], queue)
    await webhooks.emit_many(
        session,
        "result.changed",
        [
            {
                "assessment_id": str(assessment.id),
                "region": assessment.region_code,
                "framework": assessment.framework_id,
                "period": assessment.period,
                "index": decimal_text(index),
                "previous_index": decimal_text(states[assessment.id].index_value)
                if assessment.id in states
                else None,
                "predicate": predicate,
                "input_revision": assessment.input_revision,
            }
            | webhooks.internal_marker(assessment)
            for assessment, index, predicate in changed
        ],
        queue,
    )
    # Safe inside the transaction: a newer change waits for our lock before it writes its row.
    await repository.clear_requests(
        session,
        [
            (a.id, a.input_revision)
            for a in assessments
            if a.id in outcomes and outcomes[a.id].outcome in ("computed", "current")
        ],
    )
    return outcomes


@dataclass(frozen=True, slots=True)
class LoadedInputs:
    """An assessment's engine inputs: ``counted``, those its index is computed from;
    ``origins``, which value each entered one is; ``alone``, for a framework whose values are
    entered, the inputs of the index from one kind of value only (self, verified)."""

    counted: Inputs
    origins: dict[str, Value]
    # ``counted`` itself where the values of one kind are exactly the values that count.
    alone: dict[Value, Inputs]


async def load_inputs(
    session: AsyncSession, assessments: Sequence[Assessment]
) -> dict[uuid.UUID, LoadedInputs]:
    """Each assessment's engine inputs, and for each entered value whether it is the verified
    one: a handful of queries for the whole batch."""
    if not assessments:
        return {}
    frameworks = registry()
    entered = await repository.entered_values(session, [a.id for a in assessments])
    metric_keys = sorted(
        {key for a in assessments for key in frameworks[a.framework_id].metric_keys}
    )
    metrics = await repository.latest_metrics(
        session, {(a.region_code, a.period) for a in assessments}, metric_keys
    )
    linked: dict[tuple[str, str], dict[tuple[str, int, str], Decimal]] = {}
    wanted = {(a.region_code, a.period, a.stage) for a in assessments}
    # A leaf linking one source per version of an instrument reads the version in force for
    # the assessment's period (SPBE 2020 up to 2025, IPD 2026 from 2026).
    applicable = {
        a.id: {
            node.id: link_sources(node.links, a.period)
            for node in frameworks[a.framework_id].nodes()
            if node.links
        }
        for a in assessments
    }
    sources = {
        (link.framework, link.node)
        for by_node in applicable.values()
        for links in by_node.values()
        for link in links
    }
    for source_framework, source_node in sorted(sources):
        linked[(source_framework, source_node)] = await repository.linked_values(
            session,
            source_framework,
            source_node,
            wanted,
        )
    # For a link without a value, the source assessment and its state say why.
    source_of = {
        framework_id: await repository.source_assessments(session, framework_id, wanted)
        for framework_id in sorted({framework_id for framework_id, _ in sources})
    }
    outside = sorted(
        {
            node.id
            for a in assessments
            for node in frameworks[a.framework_id].nodes()
            if node.outside is not None
        }
    )
    taken_from = await repository.outside_sources(session, [a.id for a in assessments], outside)
    result: dict[uuid.UUID, LoadedInputs] = {}
    for assessment in assessments:
        framework = frameworks[assessment.framework_id]
        values, origins = counted_values(framework, entered[assessment.id])
        key = (assessment.region_code, assessment.period, assessment.stage)
        links: dict[str, Decimal] = {}
        unavailable: dict[str, str] = {}
        for node in framework.nodes():
            if not node.links:
                continue
            counted = applicable[assessment.id][node.id]
            for link in counted:
                value = linked[(link.framework, link.node)].get(key)
                if value is not None:
                    links[link.ref] = value
                else:
                    unavailable[link.ref] = _why_unlinked(
                        link.framework, key, source_of[link.framework].get(key)
                    )
            if not counted:
                families = sorted({frameworks[link.framework].family for link in node.links})
                why = f"no {' or '.join(families)} version in force for {assessment.period}"
                unavailable.update(dict.fromkeys((link.ref for link in node.links), why))
        inputs = Inputs(
            values=values,
            metrics=metrics.get((assessment.region_code, assessment.period), {}),
            linked=links,
            unavailable=unavailable,
            sources={
                node_id: ", ".join(
                    part
                    for part in (reference, None if as_of is None else f"as of {as_of}")
                    if part
                )
                for node_id, (reference, as_of) in taken_from.get(assessment.id, {}).items()
            },
        )
        alone: dict[Value, Inputs] = {}
        if framework.has_assessed_inputs:
            for kind in (Value.SELF, Value.VERIFIED):
                kind_values = values_alone(framework, entered[assessment.id], values, kind)
                # Often the values that count are all of one kind (a draft: the region's own;
                # a published assessment: verified): the same inputs, scored once.
                alone[kind] = (
                    inputs if kind_values == values else replace(inputs, values=kind_values)
                )
        result[assessment.id] = LoadedInputs(inputs, origins, alone)
    return result


def _why_unlinked(
    framework_id: str,
    key: tuple[str, int, str],
    source: tuple[uuid.UUID, AssessmentState] | None,
) -> str:
    """Why a linked view has no value from ``framework_id`` for this region and period."""
    region, period, _ = key
    if source is None:
        return f"no {framework_id} assessment for {region} {period}"
    identifier, state = source
    if state != AssessmentState.PUBLISHED:
        return (
            f"{framework_id} for {region} {period} is {state}, not published "
            f"(assessment {identifier})"
        )
    return f"{framework_id} for {region} {period} has no result yet (assessment {identifier})"


def values_alone(
    framework: Framework,
    entered: dict[str, dict[Value, Any]],
    counted: dict[str, Any],
    kind: Value,
) -> dict[str, Any]:
    """The entered values of the index computed from ``kind`` values only (the region's own, or
    the verified ones): an assessed leaf counts its ``kind`` value and is missing without one;
    an outside-index leaf counts as for the index (``counted``, of :func:`counted_values`: it is
    entered in review, never self-assessed); no official value of an inner node counts.
    Metric-driven and linked leaves come from the inputs as for the index."""
    values: dict[str, Any] = {}
    for node in framework.nodes():
        if not node.is_leaf:
            continue
        if node.input == "outside":
            if node.id in counted:
                values[node.id] = counted[node.id]
        elif node.input == "assessed" and kind in entered.get(node.id, {}):
            values[node.id] = entered[node.id][kind]
    return values


def index_alone(
    framework: Framework,
    inputs: Inputs | None,
    memo: dict[Hashable, tuple[Decimal | None, str | None]] | None = None,
) -> tuple[Decimal | None, str | None]:
    """The index and predicate of ``inputs`` (None for none, or for inputs that do not fit the
    framework: the index's own error says why).

    ``memo`` keeps them by framework version and inputs for a batch: many assessments share
    the inputs of one kind (no verified value yet, so none at all), scored once."""
    if inputs is None:
        return None, None
    key = _inputs_key(framework, inputs) if memo is not None else None
    if memo is not None and key is not None and key in memo:
        return memo[key]
    try:
        found = evaluate_index(framework, inputs)
    except InputError:
        found = (None, None)
    if memo is not None and key is not None:
        memo[key] = found
    return found


def _inputs_key(framework: Framework, inputs: Inputs) -> Hashable | None:
    """``inputs`` as a key equal only for inputs the engine scores alike: each value with its
    type (1, True and Decimal("1") compare equal but are not the same input); None when a
    value cannot be a key (a list of items)."""

    def frozen(mapping: Mapping[str, Any]) -> frozenset[tuple[str, type, Any]]:
        return frozenset((key, type(value), value) for key, value in mapping.items())

    try:
        return (
            framework.id,
            framework.content_hash,
            frozen(inputs.values),
            frozen(inputs.metrics),
            frozen(inputs.linked),
            frozen(inputs.unavailable),
            frozen(inputs.sources),
        )
    except TypeError:
        return None


def result_rows(
    result: Result,
    assessment_id: uuid.UUID,
    revision: int,
    origins: dict[str, Value],
) -> list[repository.ResultRow]:
    """The rows of ``result``, one per node: what :func:`add_result_lines` writes."""
    return [
        (
            assessment_id,
            node.id,
            node.parent,
            node.value,
            node.weight,
            node.contribution,
            node.predicate,
            node.source,
            _detail(node, origins.get(node.id)),
            revision,
        )
        for node in result.nodes.values()
    ]


def _detail(node: NodeResult, origin: Value | None) -> str:
    """A node's ``detail`` column: what it was computed from, what is missing, why."""
    fields: dict[str, object] = {
        "inputs": list(node.inputs),
        "missing": list(node.missing),
        "note": node.note,
        "value_from": origin,
    }
    if node.metrics:  # the metric values a metric-driven leaf was computed from
        fields["metrics"] = dict(node.metrics)
    return json.dumps(fields)


def add_result_lines(
    text: repository.ResultText,
    result: Result,
    assessment_id: uuid.UUID,
    revision: int,
    origins: dict[str, Value],
    details: dict[tuple[Any, ...], str],
    heads: dict[str, dict[str, tuple[str, str]]],
) -> None:
    """The rows of ``result`` (:func:`result_rows`) added to ``text`` as COPY lines, without a
    row tuple between. What repeats from one assessment to the next is formatted once a
    batch: ``heads`` keeps each node's id and parent fields and its weight by framework
    version (they are the framework's), ``details`` each node's detail field by what it says
    (the same inputs, nothing missing)."""
    framework = result.framework
    by_node = heads.get(framework.content_hash)
    if by_node is None:
        by_node = heads[framework.content_hash] = {
            node.id: (
                f"\t{text.field(node.id)}\t{text.field(node.parent)}\t",
                repository.copy_number(node.weight),
            )
            for node in result.nodes.values()
        }
    start, end = str(assessment_id), f"\t{revision}\t{text.moment}\n"
    field, number, lines = text.field, repository.copy_number, text.lines
    for node in result.nodes.values():
        origin = origins.get(node.id)
        key = (node.inputs, node.missing, node.note, origin, node.metrics)
        detail = details.get(key)
        if detail is None:
            detail = details[key] = field(_detail(node, origin))
        head, weight = by_node[node.id]
        lines.append(
            f"{start}{head}{number(node.value)}\t{weight}\t{number(node.contribution)}\t"
            f"{field(node.predicate)}\t{node.source}\t{detail}{end}"
        )


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession],
    queue: Queue,
    *,
    older_than: timedelta,
    job_timeout: timedelta,
    limit: int = 1000,
) -> int:
    """Catch up with recompute requests that waited too long (Redis was down, a worker died,
    the queue is behind), and re-enqueue runs whose next step has not come.

    Waiting requests are recomputed here, in batches of ``RUN_BATCH`` (one transaction each):
    after an outage there may be thousands, and a batch costs a fraction of as many single
    jobs. A batch that fails is handed back to single jobs, so one bad assessment cannot hold
    up the rest. A run's own next-step job id is enqueued again: arq refuses it while that job is
    queued or running, so this only recreates steps that Redis lost. A step that exists but has
    not finished within arq's retry window (a dead worker's claim lapses after the job timeout +
    10 s) gets a sweep job whose id carries a time bucket as long as that window, so it is swept
    at most once per window however often the sweeper runs.
    """
    now = datetime.now(UTC)
    window = job_timeout + timedelta(seconds=10)
    bucket = int(now.timestamp() // window.total_seconds())
    async with sessionmaker() as session:
        stale = await repository.stale_requests(session, now - older_than, limit)
        runs = await repository.stalled_runs(session, now - older_than)
    recomputed = enqueued = 0
    for start in range(0, len(stale), RUN_BATCH):
        batch = stale[start : start + RUN_BATCH]
        try:
            outcomes = await recompute_many(sessionmaker, [row[0] for row in batch], queue)
            recomputed += sum(outcome.outcome == "computed" for outcome in outcomes.values())
        except Exception:
            log.exception("sweeper: a batch of %d recomputes failed; queueing them", len(batch))
            for assessment_id, revision, since in batch:
                job_id = recompute_job_id(assessment_id, revision)
                job = await queue.enqueue(RECOMPUTE_JOB, str(assessment_id), job_id=job_id)
                if job is None and since < now - window:
                    job_id = f"{job_id}:sweep{bucket}"
                    job = await queue.enqueue(RECOMPUTE_JOB, str(assessment_id), job_id=job_id)
                enqueued += job is not None
    async with sessionmaker() as session:
        deliveries = await webhooks.due_deliveries(session, limit)
    for delivery_id in deliveries:
        job_id = f"webhook:{delivery_id}:sweep{bucket}"
        if await queue.enqueue(DELIVER_JOB, delivery_id, job_id=job_id) is not None:
            enqueued += 1
    for recompute_run in runs:
        job_id = run_job_id(recompute_run)
        job = await queue.enqueue(RUN_JOB, str(recompute_run.id), job_id=job_id)
        if job is None and recompute_run.updated_at < now - window:
            job_id = f"{job_id}:sweep{bucket}"
            job = await queue.enqueue(RUN_JOB, str(recompute_run.id), job_id=job_id)
        if job is not None:
            enqueued += 1
    if stale or enqueued:
        log.info(
            "sweeper: %d waiting recompute requests (%d recomputed here), %d stalled runs, "
            "%d jobs enqueued",
            len(stale),
            recomputed,
            len(runs),
            enqueued,
        )
    return recomputed + enqueued


async def run_step(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: uuid.UUID, queue: Queue | None
) -> RecomputeRun | None:
    """Recompute the next batches of a run (up to ``STEP_BATCHES``); returns the run, or None
    when there is nothing to do.

    The run row is locked for the step. Each batch is its own transaction, and the run's
    cursor and counts advance in a transaction of their own right after it commits, so a step
    retried after a crash redoes at most the batches whose counts were not yet recorded
    (recomputes are idempotent) and nothing is counted twice. The batches of one framework are
    pipelined: the next one is locked, read and scored while the last one's rows are written
    and committed, so Postgres's time and Python's overlap. A framework's first batch waits
    for every batch before it: frameworks are taken in link order, the ones others link to
    first, and a linked view reads what those committed.
    """
    async with sessionmaker() as session:
        recompute_run = await repository.lock_run(session, run_id)
        if recompute_run is None:
            # Finished, gone, or a step is running right now: that step carries the run on.
            return None
        if recompute_run.state in ("done", "failed"):
            return None
        frameworks = _frameworks_in_link_order(recompute_run.framework_id)
        position, after = recompute_run.cursor_framework, recompute_run.cursor_after
        in_flight: deque[_RunBatch] = deque()
        started = 0
        try:
            while True:
                batch: list[uuid.UUID] = []
                while started < STEP_BATCHES and position < len(frameworks):
                    batch = await repository.assessment_ids_after(
                        session,
                        framework_id=frameworks[position],
                        period=recompute_run.period,
                        region_code=recompute_run.region_code,
                        after=after,
                        limit=RUN_BATCH,
                    )
                    if batch:
                        break
                    position, after = position + 1, None
                if not batch and not started:
                    now = datetime.now(UTC)
                    recompute_run.state = "failed" if recompute_run.failed else "done"
                    recompute_run.finished_at = recompute_run.updated_at = now
                    await session.commit()
                    return None
                # Keep one batch written while the next is scored; a new framework waits for
                # the batches before it (it may link to their results).
                while in_flight and (
                    len(in_flight) > 1 or not batch or in_flight[-1].position != position
                ):
                    settled = await _settle(
                        sessionmaker, session, run_id, recompute_run, in_flight, queue
                    )
                    if settled is None:  # another step took the run: ours end their writes
                        await asyncio.gather(*(r.task for r in in_flight), return_exceptions=True)
                        in_flight.clear()
                        return None
                    recompute_run, going_on = settled
                    if not going_on:
                        await session.commit()
                        return recompute_run
                if not batch:
                    await session.commit()
                    return recompute_run
                previous = in_flight[-1].task if in_flight else None
                task = asyncio.create_task(
                    _recompute_batch(sessionmaker, batch, queue, force=True, after=previous)
                )
                in_flight.append(_RunBatch(position, batch, task))
                started += 1
                after = batch[-1]
        finally:
            # Left only by an error of the step itself: the batches still going are stopped.
            for running in in_flight:
                running.task.cancel()
            await asyncio.gather(*(r.task for r in in_flight), return_exceptions=True)


@dataclass(frozen=True, slots=True)
class _RunBatch:
    position: int  # of its framework in the run's link order
    ids: list[uuid.UUID]
    task: asyncio.Task[dict[uuid.UUID, Recomputed]]


async def _settle(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    run_id: uuid.UUID,
    recompute_run: RecomputeRun,
    in_flight: deque[_RunBatch],
    queue: Queue | None,
) -> tuple[RecomputeRun, bool] | None:
    """Wait for the oldest batch in flight and record it on the run: its counts and the cursor
    past it, committed. Returns the run locked again and whether the step goes on (not after a
    failed batch), or None when another step took the run meanwhile."""
    running = in_flight.popleft()
    done = failed = 0
    going_on = True
    try:
        await running.task
        done = len(running.ids)
    except Exception:
        # One bad assessment must not sink the batch: retry them one by one to find it. The
        # batches scored after it are not written (they wait for this one, then roll back).
        log.exception("batch recompute failed in run %s; retrying one by one", run_id)
        going_on = False
        await asyncio.gather(*(later.task for later in in_flight), return_exceptions=True)
        in_flight.clear()
        for assessment_id in running.ids:
            try:
                await recompute(sessionmaker, assessment_id, queue, force=True)
                done += 1
            except Exception:
                log.exception("recompute of %s failed in run %s", assessment_id, run_id)
                failed += 1
    now = datetime.now(UTC)
    recompute_run.state = "running"
    recompute_run.done += done
    recompute_run.failed += failed
    # Assessments created while the run goes (ids past its cursor) are recomputed too:
    # the total grows with them rather than being overtaken.
    recompute_run.total = max(recompute_run.total, recompute_run.done + recompute_run.failed)
    recompute_run.cursor_framework, recompute_run.cursor_after = running.position, running.ids[-1]
    recompute_run.updated_at = now
    if not going_on:
        return recompute_run, False
    await session.commit()
    again = await repository.lock_run(session, run_id)
    if again is None:
        return None
    return again, True


def run_job_id(recompute_run: RecomputeRun) -> str:
    return run_step_job_id(
        recompute_run.id, recompute_run.cursor_framework, recompute_run.cursor_after
    )


def _frameworks_in_link_order(only: str | None) -> list[str]:
    order = link_order(registry().values())
    return [framework_id for framework_id in order if only is None or framework_id == only]
