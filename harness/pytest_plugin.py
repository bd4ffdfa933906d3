"""The tcp-hil pytest plugin: tests against a lab's targets, real or virtual, the pytest way.

Registered through the ``pytest11`` entry point, so installing tcp-hil is enough. It stays out
of the way of test runs that do not ask for it: nothing is loaded or brought up until a test
requests one of its fixtures.

Options (also as ini settings ``hil_lab`` / ``hil_out``)::

    --lab FILE        the lab file (default: lab.yaml in the rootdir)
    --target NAME     run on this target; repeat for more (default: every target of the lab)
    --hil-out DIR     where pcaps, probe observations and logs go (default: hil-out/)
    --hil-from DIR    a ``hil run`` bundle whose observations ``needs`` may consult
    --hil-no-capture  do not record every test's link

Fixtures: ``lab`` (the session, :class:`~harness.session.HilSession`), ``target`` (one per
selected target, ids = target names: :class:`~harness.session.LabTarget`), ``peer`` (the raw
programmable peer of that target, the timeline DSL), ``agent`` (its agent; the test is skipped on
a target without one), ``capture`` (the test's pcap of the target's link).

Markers: ``stack("lwip", ...)`` runs a test only on targets of those stacks; ``needs("sack",
...)`` skips it where the target's configuration or a prior observation says a feature is
absent; ``probe("P1", ...)`` runs catalogue probes on the target first (once per session), so
``needs`` and ``target.observed()`` see their results.

Each test's pcaps are listed in its JUnit ``<properties>`` (``hil.pcap``) together with the
target, its stack and its build information, and in the failure output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from harness.lab.load import LabError
from harness.probes import engine
from harness.probes.catalogue import PROBES
from harness.session import (
    HilSession,
    LabTarget,
    Peer,
    SessionError,
    TestRecord,
    feature_key,
    safe_name,
)

_STATE = pytest.StashKey["_State"]()
_RECORD = pytest.StashKey[TestRecord]()
_TARGET = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tcp-hil", "tcp-hil lab and targets")
    group.addoption(
        "--lab",
        default=None,
        metavar="FILE",
        help="tcp-hil lab file (default: ini hil_lab, else lab.yaml in the rootdir)",
    )
    group.addoption(
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help="run on this lab target; repeatable (default: every target)",
    )
    group.addoption(
        "--hil-out",
        default=None,
        metavar="DIR",
        help="pcaps, observations and logs of the session (default: hil-out)",
    )
    group.addoption(
        "--hil-from",
        default=None,
        metavar="DIR",
        help="a hil run bundle whose observations the needs marker consults",
    )
    group.addoption("--hil-no-capture", action="store_true",
                    help="do not record each test's link to a pcap")  # fmt: skip
    parser.addini("hil_lab", "tcp-hil lab file, relative to the rootdir", default="lab.yaml")
    parser.addini("hil_out", "tcp-hil output directory, relative to the rootdir", default="hil-out")


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "stack(*stacks): run the test only on targets of these stacks (tcp-hil)",
        "needs(*features): skip on targets whose configuration or a prior observation says "
        "the feature is absent (feature keys or aliases sack, wscale, ts, delack) (tcp-hil)",
        "probe(*ids): run these catalogue probes on the target before the test (tcp-hil)",
    ):
        config.addinivalue_line("markers", line)
    config.stash[_STATE] = _State(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.close()


class _State:
    """The session, made when the first test needs it: loading the lab file and bringing it
    up cost nothing for runs that never ask."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._session: HilSession | None = None
        self.up_error: str | None = None

    def _path(self, option: str, ini: str) -> Path:
        value = self.config.getoption(option)
        if value:
            return Path(value).resolve()  # relative to where pytest was started
        return (self.config.rootpath / str(self.config.getini(ini))).resolve()

    @property
    def session(self) -> HilSession:
        if self._session is None:
            prior = self.config.getoption("--hil-from")
            try:
                self._session = HilSession(
                    self._path("--lab", "hil_lab"),
                    self._path("--hil-out", "hil_out"),
                    self.config.getoption("--target"),
                    prior=Path(prior) if prior else None,
                )
            except (LabError, SessionError, OSError) as exc:
                problem = str(exc)
            else:
                return self._session
            _usage(problem)  # outside the handler: the message alone, no exception chain
        return self._session

    def up(self) -> HilSession:
        """The session with its lab up; a lab that failed once fails every test at once."""
        if self.up_error is not None:
            pytest.fail(self.up_error, pytrace=False)
        session = self.session
        try:
            session.up()
        except SessionError as exc:
            self.up_error = str(exc)
            pytest.fail(self.up_error, pytrace=False)
        return session

    def close(self) -> None:
        if self._session is not None:
            self._session.down()


def _usage(message: str) -> NoReturn:
    """Stop at collection with ``message`` alone: a lab engineer's typo (lab file, target,
    feature, probe) shows what to fix, not a traceback through the plugin."""
    pytest.fail(f"tcp-hil: {message}", pytrace=False)


def _ours(metafunc: pytest.Metafunc, name: str) -> bool:
    """The fixture ``name`` a test gets is this plugin's (a conftest may define its own)."""
    defs = metafunc._arg2fixturedefs.get(name)
    return defs is not None and len(defs) > 0 and defs[-1].func.__module__ == __name__


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" not in metafunc.fixturenames or not _ours(metafunc, "target"):
        return
    for m in metafunc.definition.iter_markers("parametrize"):
        argnames = m.args[0] if m.args else m.kwargs.get("argnames", "")
        names = argnames.split(",") if isinstance(argnames, str) else list(argnames)
        if "target" in [n.strip() for n in names]:
            return  # the test chose its own targets
    _check_markers(metafunc)
    session = metafunc.config.stash[_STATE].session
    metafunc.parametrize("target", session.names, indirect=True, ids=session.names)


def _check_markers(metafunc: pytest.Metafunc) -> None:
    """Marker arguments are checked when tests are collected: a typo is a usage error that
    names the test, not a skip that hides it."""
    where = metafunc.definition.nodeid
    for m in metafunc.definition.iter_markers("needs"):
        for f in m.args:
            try:
                feature_key(str(f))
                continue
            except SessionError as exc:
                problem = str(exc)
            _usage(f"{where}: @pytest.mark.needs: {problem}")
    for m in metafunc.definition.iter_markers("probe"):
        bad = [p for p in m.args if p not in PROBES]
        if bad:
            known = ", ".join(sorted(PROBES, key=engine._order))
            _usage(f"{where}: @pytest.mark.probe: unknown probe(s) {', '.join(map(str, bad))}; "
                   f"the catalogue has {known}")  # fmt: skip


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> HilSession:
    """The lab session: the lab file's chosen targets, brought up once for the whole run."""
    return request.config.stash[_STATE].up()


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Iterator[LabTarget]:
    """One target of the lab (the test runs once per selected target)."""
    if not hasattr(request, "param"):
        _usage(
            f"{request.node.nodeid}: the target fixture is parametrised by the tcp-hil plugin; "
            "a test that parametrises 'target' itself must pass it indirectly"
        )
    name = str(request.param)
    state: _State = request.config.stash[_STATE]
    stack = state.session.spec_stack(name)
    for m in request.node.iter_markers("stack"):
        if m.args and stack not in m.args:
            pytest.skip(f"{name} runs {stack}; the test is for {', '.join(map(str, m.args))}")
    session = state.up()
    t = session.target(name)
    item = request.node
    build = json.dumps(t.build, sort_keys=True, default=str)
    item.user_properties += [("hil.target", name), ("hil.stack", stack), ("hil.build", build)]
    record = TestRecord(item.nodeid, session.out / "tests" / safe_name(item.nodeid))
    item.stash[_RECORD] = record
    item.stash[_TARGET] = name
    t.begin(record)
    try:
        for m in item.iter_markers("probe"):
            t.probe(*map(str, m.args))
        for m in item.iter_markers("needs"):
            for f in m.args:
                why = t.absent(str(f))
                if why is not None:
                    pytest.skip(f"needs {f}: {why}")
        if request.config.getoption("--hil-no-capture"):
            yield t
        else:
            with t.capture() as cap:
                record.captures[name] = cap
                yield t
    finally:
        t.end()
        item.user_properties += [("hil.pcap", str(p)) for p in record.pcaps]


@pytest.fixture
def peer(target: LabTarget) -> Peer:
    """The tester as a programmable TCP peer of the target: ``with peer.timeline("echo") as
    t:`` runs the timeline DSL on the raw side of its link (``docs/timeline.md``)."""
    return Peer(target)


@pytest.fixture
def agent(target: LabTarget) -> Any:
    """The target's agent (``docs/agent.md``); the test is skipped where there is none."""
    if target.agent is None:
        pytest.skip(f"{target.name} ({target.stack}) has no agent")
    return target.agent


@pytest.fixture
def capture(request: pytest.FixtureRequest, target: LabTarget) -> Iterator[Any]:
    """The pcap of this test's link: ``capture.path``, ``capture.packets()`` once stopped."""
    record = request.node.stash[_RECORD]
    running = record.captures.get(target.name)
    if running is not None:
        yield running
        return
    with target.capture() as cap:
        record.captures[target.name] = cap
        yield cap


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    record = item.stash.get(_RECORD, None)
    if record is not None and report.failed:
        lines = [f"target: {item.stash.get(_TARGET, '?')}"]
        lines += [f"pcap:   {p}" for p in record.pcaps] or ["pcap:   none recorded"]
        for name, o in record.observations:
            fam = f", {o.family}" if o.family else ""
            lines.append(
                f"observed on {name}: {o.key} = {o.value!r} {o.unit} "
                f"({o.verdict}, probe {o.probe}{fam})"
            )
        report.sections.append(("tcp-hil", "\n".join(lines)))
    return report


def pytest_report_header(config: pytest.Config) -> str | None:
    if not (config.getoption("--lab") or config.getoption("--target")):
        return None
    targets = ", ".join(config.getoption("--target")) or "all"
    return (
        f"tcp-hil: lab {config.getoption('--lab') or config.getini('hil_lab')}, targets {targets}"
    )
