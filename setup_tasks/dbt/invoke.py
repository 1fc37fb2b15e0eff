"""Running dbt in this process through its Python entry point: the only module that imports dbt.

dbt is imported on first use only (about 2 s), the project is parsed only when the
manifest is stale, and every invocation reuses the parsed manifest. Node results
stream back through dbt's event callbacks as each node finishes, so the caller can
record them durably before the invocation ends.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import pickle
import re
import sys
import threading
from collections.abc import Mapping as MappingABC
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

from ..errors import GraphCycleError, PackagesError, ProjectError
from ..files import discarded, make_private_dir, write_bytes_atomic
from ..keys import seal, unseal
from ..project.context import Connection, DbtContext, DbtProfile, parse_failure
from ..store.caches import manifest_cache
from ..store.database import held_databases

# Invocation flags that cut dbt's fixed costs: no artifacts, no network (these machines have none).
COMMON_FLAGS: Sequence[str] = ["--no-write-json", "--no-send-anonymous-usage-stats"]
# Commands that write relations populate dbt's relation cache first, as `dbt build` does: without it, a
# thread listing the schema mid-run re-adds a relation another thread has just renamed ("Cache
# inconsistency detected: in rename, new key ... already in cache"). A compile or parse needs none.
WRITING_COMMANDS = frozenset({"build", "test", "seed", "run", "snapshot"})
SELECTABLE: Sequence[str] = ["--resource-type", "seed", "--resource-type", "model", "--resource-type", "snapshot"]


class Selected(Protocol):
    """What an invocation needs of a node: a manifest ``Node``, or the worker's ``Target`` sent by a client."""

    @property
    def unique_id(self) -> str: ...

    @property
    def selector(self) -> str: ...


@dataclass(frozen=True)
class NodeOutcome:
    """What dbt reported for one node."""

    unique_id: str
    status: str  # success | error | skipped | fail | warn | pass
    message: str
    seconds: float
    rows: int | None = None
    failures: int | None = None
    sql: str | None = None  # a test's compiled query (it selects the offending rows), a model's SQL
    # What dbt's Jinja read while compiling the node (``recorded_reads``): names of its context,
    # ``adapter.<attr>`` and ``flags.<FLAG>``; None when dbt did not compile it in this invocation.
    reads: tuple[str, ...] | None = None


CYCLE_RE = re.compile(r"Found a cycle: (.+)$")
DBT_PREFIX_RE = re.compile(r"^(Runtime|Compilation|Database) Error in \w+ \S+ \([^)]*\)\s*")


def one_line(text: str) -> str:
    """dbt messages span lines and indent; users get one line, without dbt's node prefix or rulers."""
    text = re.sub(r"-{4,}", " ", text or "")
    return DBT_PREFIX_RE.sub("", re.sub(r"\s+", " ", text).strip())


@contextmanager
def _environment(ctx: DbtContext) -> Iterator[None]:
    """dbt's process state for one invocation: setup's environment overrides, and the project
    directory as the working directory (a profile's relative path resolves there, as for the team)."""
    values = ctx.env_overrides()
    saved = {k: os.environ.get(k) for k in values}
    try:
        saved_cwd: str | None = os.getcwd()
    except FileNotFoundError:  # the caller's directory was removed: nowhere to go back to
        saved_cwd = None
    os.environ.update(values)
    os.chdir(ctx.cwd)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        if saved_cwd is not None:
            os.chdir(saved_cwd)


Phase = Callable[[str], None]


def _starting(on_phase: Phase | None) -> None:
    """Say "starting" when this process has yet to import dbt (2-4 s): before the import, not after."""
    if on_phase is not None and "dbt.cli.main" not in sys.modules:
        on_phase("starting")


def _runner(manifest: Any = None, callbacks: Sequence[Callable[[Any], None]] = ()) -> Any:
    from dbt.cli.main import dbtRunner

    # dbt writes its log file (logs/dbt.log) through Python logging: on a full or read-only
    # disk, logging would print a traceback per line. The failure itself reaches the user
    # through the node's outcome, in one line.
    logging.raiseExceptions = False
    return dbtRunner(manifest=manifest, callbacks=list(callbacks))


def _invoke(
    ctx: DbtContext,
    args: Sequence[str],
    manifest: Any = None,
    callbacks: Sequence[Callable[[Any], None]] = (),
    quiet: bool = True,
    reads: InvocationReads | None = None,
) -> Any:
    # Quiet: nothing on the console (outcomes carry the errors; the caller may take
    # dbt's lines through a callback) and only warnings in logs/dbt.log; its debug
    # lines cost up to 3 s of a cold build. Never colour: lines reach the user through setup.
    level = ["--log-level", "none", "--log-level-file", "warn"] if quiet else []
    with _environment(ctx):
        runner = _runner(manifest, callbacks)
        with recorded_reads(reads):
            cache = [] if WRITING_COMMANDS & set(args) else ["--no-populate-cache"]
            result = runner.invoke([*level, *args, *ctx.cli_args(), *COMMON_FLAGS, *cache, "--no-use-colors"])
    if isinstance(result.exception, KeyboardInterrupt):
        raise KeyboardInterrupt
    return result


# -- what dbt's compile reads ----------------------------------------------------------------------
#
# Whether SQL dbt compiled earlier is what it would compile now depends on what its Jinja read:
# names of the context (``var``, ``target``, ``run_started_at``, ``run_query`` ...), the adapter's
# methods (``adapter.get_columns_in_relation`` queries the database), dbt's flags, environment
# variables. Rather than guessing from the source text (which every new spelling escapes), dbt is
# watched while it compiles: the hooks below record, per node, every name its templates and the
# macros they ran resolved (Jinja resolves each name a frame uses as the frame starts), and per
# invocation every environment variable dbt looked up. The hooks are process-wide (installed once,
# on dbt's first import here) and record only while an invocation of ours runs.


@dataclass
class InvocationReads:
    """What one invocation's compiles read: per node, and the environment variables dbt looked up."""

    nodes: dict[str, set[str]] = field(default_factory=dict)
    env: set[str] = field(default_factory=set)


class _Recording(threading.local):
    """The node a compile thread is compiling (its reads so far); None outside a compile."""

    reads: set[str] | None = None


# The one invocation being recorded (dbt runs one invocation at a time in a process) and each
# compile thread's node: process state, as the hooks that fill them are.
_INVOCATION: list[InvocationReads] = []
_THREAD = _Recording()
_HOOKED = "_planwise_recording"


def _note(name: str) -> None:
    reads = _THREAD.reads
    if reads is not None:
        reads.add(name)


class _RecordingEnv(MappingABC[str, str]):
    """dbt's view of the environment, noting each variable it looks up (iterating looks up none)."""

    def __init__(self, env: Mapping[str, str], seen: set[str]) -> None:
        self._env, self._seen = env, seen

    def __getitem__(self, key: str) -> str:
        self._seen.add(key)
        return self._env[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self._seen.add(key)
        return key in self._env

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def _install_recording() -> None:
    """Hook dbt and Jinja so that compiles report what they read (idempotent)."""
    import jinja2.runtime
    from argparse import Namespace

    import dbt.flags
    from dbt.compilation import Compiler
    from dbt.context.providers import RuntimeDatabaseWrapper
    from dbt_common.context import InvocationContext

    if getattr(Compiler.compile_node, _HOOKED, False):
        return

    resolve = jinja2.runtime.Context.resolve_or_missing

    def resolve_or_missing(self: Any, key: str) -> Any:
        _note(key)
        return resolve(self, key)

    adapter_attribute: Callable[..., Any] = RuntimeDatabaseWrapper.__getattr__

    def database_attribute(self: Any, name: str) -> Any:
        _note(f"adapter.{name}")
        return adapter_attribute(self, name)

    class RecordingFlags(Namespace):
        def __getattribute__(self, name: str) -> Any:
            if name.isupper():
                _note(f"flags.{name}")
            return super().__getattribute__(name)

    flag_object: Callable[[], Any] = dbt.flags.get_flag_obj

    def get_flag_obj() -> Any:
        return RecordingFlags(**vars(flag_object()))

    compile_node = Compiler.compile_node

    def recorded_compile(self: Any, node: Any, manifest: Any, *args: Any, **kwargs: Any) -> Any:
        outer = _THREAD.reads is None
        if outer:
            _THREAD.reads = set()
        try:
            return compile_node(self, node, manifest, *args, **kwargs)
        finally:
            if outer:
                reads, _THREAD.reads = _THREAD.reads, None
                if _INVOCATION:
                    _INVOCATION[-1].nodes.setdefault(node.unique_id, set()).update(reads or ())

    env_property: Any = InvocationContext.env  # a property (dbt's types say a method): its getter is wrapped

    def env(self: Any) -> Any:
        found = env_property.fget(self)
        return _RecordingEnv(found, _INVOCATION[-1].env) if _INVOCATION else found

    setattr(recorded_compile, _HOOKED, True)
    jinja2.runtime.Context.resolve_or_missing = resolve_or_missing  # type: ignore[method-assign]
    RuntimeDatabaseWrapper.__getattr__ = database_attribute  # type: ignore[method-assign]
    dbt.flags.get_flag_obj = get_flag_obj
    Compiler.compile_node = recorded_compile  # type: ignore[method-assign]
    InvocationContext.env = property(env)  # type: ignore[method-assign,assignment]


@contextmanager
def recorded_reads(reads: InvocationReads | None = None) -> Iterator[InvocationReads]:
    """Record what the dbt invocation run inside reads (see above), into ``reads`` when given."""
    _install_recording()
    reads = InvocationReads() if reads is None else reads
    _INVOCATION.append(reads)
    try:
        yield reads
    finally:
        _INVOCATION.remove(reads)


# -- selecting the nodes of a batch ----------------------------------------------------------------------

WILDCARDS = ("*", "?", "[", "]")


class _Everything:
    """Every unique id (dbt's node walks take the ids they may yield)."""

    def __contains__(self, item: object) -> bool:
        return True


@contextmanager
def indexed_selection() -> Iterator[None]:
    """dbt answers each selector of ``--select`` by walking every node of the project (``path:`` with
    pathlib: 10 ms a selector at 300 models, several times per invocation): a batch naming each of 1,000
    nodes spent most of its time selecting them. Setup names a node by its file (``path:``) and a test by
    its fqn (``Node.selector``): while the invocation runs, those are answered from an index of the manifest
    made once, with the answer dbt's walk gives (a path naming a file: the nodes defined or patched in it;
    an fqn without wildcards in a project without versioned models: the nodes it names or is a prefix of,
    scoped or not). Any other selector walks as dbt does."""
    from dbt.graph import selector_methods as methods
    from dbt_common.events.contextvars import get_project_root

    path_search = methods.PathSelectorMethod.search
    fqn_search = methods.QualifiedNameSelectorMethod.search
    indexes: dict[str, Any] = {}

    def by_path(self: Any, included: Any, selector: str) -> Iterator[Any]:
        root = Path(get_project_root() or Path.cwd())  # type: ignore[no-untyped-call]  # dbt's, untyped
        if (
            not selector
            or any(w in selector for w in WILDCARDS)
            or Path(selector).is_absolute()
            or not (root / selector).is_file()
        ):
            yield from path_search(self, included, selector)
            return
        if "path" not in indexes:
            indexes["path"] = _path_index(self)
        yield from (uid for uid in indexes["path"].get(Path(selector), ()) if uid in included)

    def by_fqn(self: Any, included: Any, selector: str) -> Iterator[Any]:
        if "fqn" not in indexes:
            indexes["fqn"] = _fqn_index(self)
        index = indexes["fqn"]
        if index is None or not selector or any(w in selector for w in WILDCARDS):
            yield from fqn_search(self, included, selector)
            return
        leaves, prefixes = index
        parts = tuple(selector.split("."))
        found = leaves.get(selector, set()) | prefixes.get((True, parts), set()) | prefixes.get((False, parts), set())
        yield from (uid for uid in found if uid in included)

    methods.PathSelectorMethod.search = by_path  # type: ignore[method-assign,assignment]  # same call, faster
    methods.QualifiedNameSelectorMethod.search = by_fqn  # type: ignore[method-assign,assignment]  # same call, faster
    try:
        yield
    finally:
        methods.PathSelectorMethod.search = path_search  # type: ignore[method-assign]
        methods.QualifiedNameSelectorMethod.search = fqn_search  # type: ignore[method-assign]


def _path_index(method: Any) -> dict[Path, list[Any]]:
    """File -> the nodes whose file it is, or whose properties (patch) file it is."""
    index: dict[Path, list[Any]] = {}
    for uid, node in method.all_nodes(_Everything()):
        index.setdefault(Path(node.original_file_path), []).append(uid)
        patch = getattr(node, "patch_path", None)
        if patch:
            index.setdefault(Path(patch.split("://")[1]), []).append(uid)
    return index


def _fqn_index(method: Any) -> tuple[dict[str, set[Any]], dict[tuple[bool, tuple[str, ...]], set[Any]]] | None:
    """(fqn leaf -> nodes, (scoped, dotted fqn prefix) -> nodes) over the nodes dbt's fqn method walks;
    None when a model is versioned (dbt matches those by other rules)."""
    leaves: dict[str, set[Any]] = {}
    prefixes: dict[tuple[bool, tuple[str, ...]], set[Any]] = {}
    for uid, node in method.non_source_nodes(_Everything()):
        if node.is_versioned:
            return None
        leaves.setdefault(node.fqn[-1], set()).add(uid)
        for scoped, fqn in ((True, node.fqn), (False, node.fqn[1:])):
            flat = tuple(item for segment in fqn for item in segment.split("."))
            for size in range(1, len(flat) + 1):
                prefixes.setdefault((scoped, flat[:size]), set()).add(uid)
    return leaves, prefixes


PICKLE_PURPOSE = "dbt-manifest-pickle"


def _pickle_path(manifest_path: Path) -> Path:
    return manifest_path.with_name("manifest.pickle")


def _rebuild_manifest(state: dict[str, Any]) -> Any:
    from dbt.contracts.graph.manifest import Manifest

    return Manifest(**state)


class _ManifestPickler(pickle.Pickler):
    """Pickles dbt's Manifest by field name.

    dbt's own ``Manifest.__reduce_ex__`` passes its fields by position and misses
    one (``fixtures``), so everything after it lands in the wrong field: lookups
    then break on the second invocation. The private lookups and caches are left
    out; dbt rebuilds them on first use.
    """

    def reducer_override(self, obj: Any) -> Any:
        from dbt.contracts.graph.manifest import Manifest

        if type(obj) is Manifest:
            import dataclasses

            state = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if not f.name.startswith("_")}
            return _rebuild_manifest, (state,)
        return NotImplemented


def _save_pickle(manifest_path: Path, invocation_id: str, manifest: Any) -> None:
    """dbt's Manifest object as parsed: loading it is 40x faster than rebuilding it from JSON.

    Sealed with the user's key (``keys.seal``): unpickling runs code, so only a file this
    user's setup wrote is ever unpickled. Private (0600): it holds env_var() values.
    """
    buffer = io.BytesIO()
    try:
        _ManifestPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump((invocation_id, manifest))
        write_bytes_atomic(_pickle_path(manifest_path), seal(PICKLE_PURPOSE, buffer.getvalue()))
    except Exception:  # a cache: without it the manifest is rebuilt from manifest.json
        pass


def _load_pickle(manifest_path: Path, invocation_id: str) -> Any:
    """The pickled Manifest of ``invocation_id``, or None; a file that is not sealed by this user is never unpickled."""
    path = _pickle_path(manifest_path)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    payload = unseal(PICKLE_PURPOSE, data)
    if payload is None:
        discarded(path, "not sealed with your key (never unpickled)")
        return None
    try:
        stored_id, manifest = pickle.loads(payload)
    except Exception:
        discarded(path, "unreadable pickle")
        return None
    return manifest if stored_id == invocation_id else None


@dataclass(frozen=True)
class Parsed:
    """What a parse gives: manifest.json's content, the resolved selections, the rendered profile."""

    raw: dict[str, Any]
    selections: dict[str, tuple[str, ...]]
    profile: DbtProfile
    # Environment variables dbt looked up while it parsed (env_var() by any name, in any file).
    env_reads: tuple[str, ...] = ()


def _rendered_profile(ctx: DbtContext) -> DbtProfile:
    """The profile of the parse that just ran: its registered adapter holds the rendered credentials."""
    from dbt.adapters.factory import FACTORY

    adapters: list[Any] = list(FACTORY.adapters.values())  # dbt's AdapterProtocol leaves out .config
    if adapters:
        config = adapters[0].config
        credentials = config.credentials
    else:  # no adapter registered (a dbt version that parses without one): render the profile ourselves
        from dbt.config.runtime import load_profile

        config = load_profile(str(ctx.project_dir), dict(ctx.vars), None, ctx.target, ctx.threads)
        credentials = config.credentials
    return DbtProfile.rendered(
        config.profile_name,
        config.target_name,
        credentials.type,
        getattr(credentials, "path", None),
        ctx.cwd,
        _target_context(config),
        _connection(credentials),
    )


def _target_context(config: Any) -> str:
    """A digest of what ``{{ target }}`` renders: the target's name, threads and every credential field."""
    import hashlib

    try:
        fields = config.credentials.to_dict(omit_none=False)
    except Exception:  # noqa: BLE001 - an adapter whose credentials do not serialise: its repr
        fields = repr(config.credentials)
    data = {"profile": config.profile_name, "target": config.target_name, "threads": config.threads, "fields": fields}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


# Profile keys of dbt-duckdb whose effect setup cannot reproduce on its own connection.
UNSUPPORTED_CONNECTION = (
    "secrets",
    "filesystems",
    "plugins",
    "remote",
    "use_credential_provider",
    "retries",
    "flights",
    "motherduck_token",
    "is_ducklake",
    "disable_transactions",
)


def _connection(credentials: Any) -> Connection:
    """How dbt-duckdb opens and configures its connections from these credentials (its Environment)."""
    if getattr(credentials, "type", None) != "duckdb":
        return Connection(unsupported=("adapter",))
    unsupported = [key for key in UNSUPPORTED_CONNECTION if getattr(credentials, key, None)]
    if getattr(credentials, "is_motherduck", False):
        unsupported.append("motherduck")
    extensions: list[str] = []
    for extension in credentials.extensions or ():
        if isinstance(extension, str):
            extensions.append(extension)
        else:
            unsupported.append("extensions from a repository")
    try:
        attach = [attachment.to_sql() for attachment in credentials.attach or ()]
    except Exception:  # noqa: BLE001 - dbt-duckdb refuses it too: dbt says why
        attach = []
        unsupported.append("attach")
    settings = {str(k): str(v) for k, v in (credentials.settings or {}).items()}
    return Connection(
        dict(credentials.config_options or {}), tuple(extensions), tuple(attach), settings, tuple(unsupported)
    )


def _outcome_from_event(event: Any, manifest: Any = None, reads: InvocationReads | None = None) -> NodeOutcome | None:
    if event.info.name != "NodeFinished":
        return None
    data = event.data
    rr = data.run_result
    response = dict(rr.adapter_response) if rr.adapter_response else {}
    rows = response.get("rows_affected")
    uid, status = data.node_info.unique_id, str(rr.status or data.node_info.node_status)
    sql = None
    compiled = status in ("success", "pass", "warn", "fail")  # else the node's compiled_code may be an earlier one's
    if compiled and manifest is not None and uid in manifest.nodes and uid.startswith(("test.", "model.", "snapshot.")):
        sql = getattr(manifest.nodes[uid], "compiled_code", None)  # dbt compiled it into its manifest
    read = reads.nodes.get(uid) if reads is not None else None
    if read is not None and reads is not None:  # and what the invocation looked up of the environment
        read = read | {f"env:{name}" for name in reads.env}
    return NodeOutcome(
        unique_id=uid,
        status=status,
        message=one_line(rr.message),
        seconds=float(rr.execution_time or 0.0),
        rows=int(rows) if rows is not None else None,
        failures=int(rr.num_failures) if getattr(rr, "num_failures", None) else None,
        sql=sql,
        reads=tuple(sorted(read)) if read is not None else None,
    )


class InProcessDbt:
    """dbt in this process, keeping dbt's own Manifest object between invocations."""

    def __init__(self) -> None:
        self._manifests: dict[str, Any] = {}  # invocation id -> dbt Manifest (the latest only)

    def _remember(self, invocation_id: str, manifest: Any) -> None:
        self._manifests = {invocation_id: manifest}

    def parse_project(
        self, ctx: DbtContext, selections: Mapping[str, str], full: bool = False, on_phase: Phase | None = None
    ) -> Parsed:
        """Parse the project with dbt (writing target/manifest.json), resolve the selections, and
        read the profile dbt rendered (the database file it writes): no extra cost, dbt just did it.

        ``full``: parse every file (``--no-partial-parse``), not only those changed since the last parse.
        ``on_phase`` hears "starting" (dbt is being imported) and "parsing".
        """
        manifest_path = manifest_cache(ctx).manifest_path
        try:
            make_private_dir(manifest_path.parent.parent)  # dbt writes rendered SQL and env_var() values here
            make_private_dir(manifest_path.parent)
        except OSError as exc:
            raise parse_failure(ctx, str(exc)) from None
        partial = ["--no-partial-parse"] if full else []
        _starting(on_phase)
        runner = _runner()
        if on_phase is not None:
            on_phase("parsing")
        with _environment(ctx), recorded_reads() as reads:
            result = runner.invoke(
                ["--log-level", "none", *partial, "parse", *ctx.cli_args(), "--no-send-anonymous-usage-stats"]
            )
            profile = _rendered_profile(ctx) if result.success else None
        if isinstance(result.exception, KeyboardInterrupt):
            raise KeyboardInterrupt
        if not result.success or result.result is None or profile is None:
            raise parse_failure(ctx, one_line(str(result.exception)))
        manifest = result.result
        raw = json.loads(manifest_path.read_text())
        self._remember(raw["metadata"]["invocation_id"], manifest)
        _save_pickle(manifest_path, raw["metadata"]["invocation_id"], manifest)
        resolved = {name: self.resolve_selection(ctx, manifest, expr, name) for name, expr in selections.items()}
        return Parsed(raw, resolved, profile, tuple(sorted(reads.env)))

    def install_packages(self, ctx: DbtContext) -> None:
        """`dbt deps`: install the packages packages.yml / dependencies.yml name (a PackagesError if it fails)."""
        from dbt.cli.main import dbtRunner

        args = [
            "--log-level",
            "none",
            "deps",
            "--project-dir",
            str(ctx.project_dir),
            "--profiles-dir",
            str(ctx.profiles_dir),
            "--no-send-anonymous-usage-stats",
        ]
        if ctx.vars:
            args += ["--vars", json.dumps(dict(ctx.vars), sort_keys=True, default=str)]
        with _environment(ctx):
            result = dbtRunner().invoke(args)
        if isinstance(result.exception, KeyboardInterrupt):
            raise KeyboardInterrupt
        if not result.success:
            raise PackagesError(
                f"dbt deps failed in {ctx.project_dir}: {one_line(str(result.exception))}",
                "correct the entry packages.yml names above, then run again",
            )

    def resolve_selection(self, ctx: DbtContext, manifest: Any, selection: str, name: str = "") -> tuple[str, ...]:
        """Unique ids of the seeds, models and snapshots a dbt selection expression picks.

        The setup selection (``name`` "setup") must match in every part: dbt only warns
        when a criterion matches nothing, and a typo would silently leave nodes out.
        """
        if not selection.strip():
            return ()
        unmatched: list[str] = []

        def warned(event: Any) -> None:
            if event.info.name == "NoNodesForSelectionCriteria":
                unmatched.append(one_line(event.info.msg))

        key = f"dbt.{name}_selection" if name else "the selection"
        result = _invoke(
            ctx,
            [
                "--log-level",
                "none",
                "ls",
                "--select",
                selection,
                *SELECTABLE,
                "--output",
                "json",
                "--output-keys",
                "unique_id",
            ],
            manifest=manifest,
            callbacks=[warned],
            quiet=False,
        )
        if not result.success:
            message = one_line(str(result.exception))
            cycle = CYCLE_RE.search(message)
            if cycle:
                raise GraphCycleError([part.strip() for part in cycle.group(1).split("-->")])
            raise ProjectError(
                f"dbt could not resolve {key} {selection!r}: {message}", f"use dbt's node selection syntax in {key}"
            )
        if unmatched and name == "setup":
            raise ProjectError(
                f"{key} {selection!r}: {'; '.join(unmatched)}",
                f"correct {key} in the setup config (dbt's node selection syntax, e.g. path:models/staging)",
            )
        return tuple(sorted(json.loads(line)["unique_id"] for line in result.result or []))

    def dbt_manifest(self, manifest_path: Path) -> Any:
        """dbt's own Manifest object for the manifest.json on disk (no re-parse)."""
        raw = json.loads(manifest_path.read_text())
        raw_meta = raw.get("metadata", {})
        cached = self._manifests.get(raw_meta.get("invocation_id"))
        if cached is None:
            cached = _load_pickle(manifest_path, raw_meta.get("invocation_id"))
        if cached is not None:
            self._remember(raw_meta.get("invocation_id"), cached)
            return cached
        from dbt.artifacts.schemas.manifest import WritableManifest
        from dbt.contracts.graph.manifest import Manifest
        from dbt.contracts.graph.nodes import GenericTestNode

        manifest = Manifest.from_writable_manifest(WritableManifest.read_and_check_versions(str(manifest_path)))
        # The artifact schema reads every test as a singular test, dropping test_metadata:
        # generic tests then fail to compile ('_dbt_generic_test_kwargs' is undefined).
        for uid, node in raw.get("nodes", {}).items():
            if node.get("resource_type") == "test" and node.get("test_metadata"):
                manifest.nodes[uid] = GenericTestNode.from_dict(node)
        self._remember(raw_meta.get("invocation_id"), manifest)
        return manifest

    def _run(
        self,
        ctx: DbtContext,
        manifest_path: Path,
        command: list[str],
        nodes: Sequence[Selected],
        on_outcome: Callable[[NodeOutcome], None],
        quiet: bool,
        on_start: Callable[[str], None] | None = None,
        log: Callable[[str], None] | None = None,
        on_phase: Phase | None = None,
        edges: Sequence[tuple[str, str]] = (),
    ) -> dict[str, NodeOutcome]:
        """One dbt invocation over ``nodes``; each outcome reported as dbt finishes it.

        ``log`` takes dbt's own lines (then dbt itself writes nothing to the console, so
        the caller decides where they go); ``quiet`` without ``log`` keeps them out.
        """
        outcomes: dict[str, NodeOutcome] = {}
        if not nodes:
            return outcomes  # an empty --select would mean "everything"
        _starting(on_phase)  # before the manifest loads: that imports dbt
        manifest = self.dbt_manifest(manifest_path)
        _uncompiled(manifest)
        _add_edges(manifest, edges)
        reads = InvocationReads()

        def callback(event: Any) -> None:
            if log is not None and event.info.level in ("info", "warn", "error") and event.info.msg:
                log(event.info.msg)
            if event.info.name == "NodeStart" and on_start is not None:
                on_start(event.data.node_info.unique_id)
                return
            outcome = _outcome_from_event(event, manifest, reads)
            if outcome is not None:
                outcomes[outcome.unique_id] = outcome
                on_outcome(outcome)

        selection = " ".join(node.selector for node in nodes)
        kept = held_databases()  # the caller's own connections, if any: not dbt's to release
        failure = None
        try:
            with indexed_selection():
                result = _invoke(
                    ctx, [*command, "--select", selection], manifest, [callback], quiet or log is not None, reads
                )
            if not result.success and result.exception is not None:
                failure = one_line(str(result.exception))
            del result  # dbt's result keeps the errors (and what their tracebacks hold open) alive
        finally:
            release_database(kept)
        if failure is not None and not outcomes:
            message = failure
            for node in nodes:
                outcomes[node.unique_id] = NodeOutcome(node.unique_id, "error", message, 0.0)
                on_outcome(outcomes[node.unique_id])
        return outcomes

    def build_nodes(
        self,
        ctx: DbtContext,
        manifest_path: Path,
        nodes: Sequence[Selected],
        on_outcome: Callable[[NodeOutcome], None],
        quiet: bool = True,
        on_start: Callable[[str], None] | None = None,
        log: Callable[[str], None] | None = None,
        on_phase: Phase | None = None,
        edges: Sequence[tuple[str, str]] = (),
    ) -> dict[str, NodeOutcome]:
        """Build seeds and models in one dbt invocation (dbt orders them), and the tests among ``nodes``
        (each right after what it reads; what is downstream of one that fails is skipped, as in `dbt build`).

        ``edges`` (reader, builder) are dependencies dbt's graph lacks (a seed read through
        source()): added to dbt's manifest, so the same invocation builds the seed first.

        With the flags of a plain `dbt build` (no ``--full-refresh``: a model reading
        ``flags.FULL_REFRESH`` compiles as there): the caller moves aside the relations that a
        materialization would build on (a seed's table, an incremental model's), so that each
        node is built from its inputs as a fresh build builds it (``engine.Engine._move_aside``).
        """
        if any(node.unique_id.startswith("test.") for node in nodes):  # the tests named run after what they read
            command = ["build", "--indirect-selection", "cautious", "--exclude-resource-type", "unit_test"]
        else:
            command = ["build", "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test"]
        return self._run(ctx, manifest_path, command, nodes, on_outcome, quiet, on_start, log, on_phase, edges)

    def run_tests(
        self,
        ctx: DbtContext,
        manifest_path: Path,
        tests: Sequence[Selected],
        on_outcome: Callable[[NodeOutcome], None],
        quiet: bool = True,
        log: Callable[[str], None] | None = None,
        on_phase: Phase | None = None,
    ) -> dict[str, NodeOutcome]:
        """Run the given dbt tests in one invocation (a failed one's outcome carries its compiled query)."""
        return self._run(ctx, manifest_path, ["test"], tests, on_outcome, quiet, log=log, on_phase=on_phase)

    def compile_nodes(
        self,
        ctx: DbtContext,
        manifest_path: Path,
        nodes: Sequence[Selected],
        on_outcome: Callable[[NodeOutcome], None],
        quiet: bool = True,
        log: Callable[[str], None] | None = None,
        on_phase: Phase | None = None,
    ) -> dict[str, NodeOutcome]:
        """Compile the given models and tests as a plain `dbt build` would (its flags), never querying the
        database (``--no-introspect``: a node whose Jinja queries it fails to compile here, and says so);
        each outcome carries the compiled SQL and what its Jinja read."""
        return self._run(
            ctx, manifest_path, ["compile", "--no-introspect"], nodes, on_outcome, quiet, log=log, on_phase=on_phase
        )

    def run_cli(self, ctx: DbtContext, args: Sequence[str], colour: bool, on_phase: Phase | None = None) -> int:
        """dbt's own command line with setup's context (project, profiles, target, vars, database): its exit status.

        dbt writes to its usual target folder and prints as it does by hand. ``on_phase`` hears
        "starting" before dbt's import (seconds, before dbt prints anything) and "started" after it.
        """
        flags = [] if colour else ["--no-use-colors"]
        _starting(on_phase)
        runner = _runner()
        kept = held_databases()
        if on_phase is not None:
            on_phase("started")
        with _environment(ctx):
            result = runner.invoke([*args, *ctx.cli_args(own_target=False), *flags])
        interrupted = isinstance(result.exception, KeyboardInterrupt)
        status = 0 if result.success else (2 if result.exception is not None else 1)
        del result  # see _run: what it keeps holds a failed connection open
        release_database(kept)
        if interrupted:
            raise KeyboardInterrupt
        return status


def _uncompiled(manifest: Any) -> None:
    """Every node as the parse left it, before an invocation compiles some again.

    dbt compiles into its manifest's nodes, and marks a node whose ephemeral models' CTEs it
    injected: an invocation reusing the manifest (a later build in the worker) re-renders the node
    but, seeing the mark, never injects them again -- SQL that selects from ``__dbt__cte__<model>``
    with no such CTE ("Table with name __dbt__cte__... does not exist").
    """
    for node in manifest.nodes.values():
        if getattr(node, "extra_ctes_injected", False) or getattr(node, "compiled", False):
            node.compiled = False
            node.compiled_code = None
            node.extra_ctes_injected = False
            node.extra_ctes = []
            node._pre_injected_sql = None


def _add_edges(manifest: Any, edges: Sequence[tuple[str, str]]) -> None:
    """Make each reader depend on a builder in dbt's own manifest: dbt links its graph from
    ``depends_on.nodes`` at every invocation, so it then orders them (idempotent)."""
    for reader, builder in edges:
        node = manifest.nodes.get(reader)
        if node is not None and builder in manifest.nodes and builder not in node.depends_on.nodes:
            node.depends_on.nodes.append(builder)


def warm_up() -> None:
    """Import what every invocation needs, ahead of the first one (for the warm worker)."""
    import dbt.adapters.duckdb  # noqa: F401
    import dbt.cli.main  # noqa: F401
    from dbt.artifacts.schemas.manifest import WritableManifest  # noqa: F401
    from dbt.contracts.graph.manifest import Manifest  # noqa: F401
    from dbt.contracts.project import Project, ProfileConfig

    # dbt validates dbt_project.yml and profiles.yml against JSON Schemas it builds,
    # slowly, on first use in a process.
    Project.json_schema()
    ProfileConfig.json_schema()


def release_database(kept: Sequence[str] | None = ()) -> list[str]:
    """Close dbt-duckdb's in-process database, so the engine (or the next request) can open it its own way.

    Returns the DuckDB files this process still holds after that, besides ``kept`` (those it held
    before dbt ran). A connection that failed half-way (an extension that cannot load) is not
    dbt-duckdb's to close: it lives on in the cycle of the error's traceback until the garbage
    collector frees it, so it is collected here while another file is held (or where open files
    cannot be listed).
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover - adapter is a dependency
        return []
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
        if env is not None:
            env.close()
    held = _held_besides(kept)
    if held != []:
        gc.collect()
        held = _held_besides(kept)
    return held or []


def _held_besides(kept: Sequence[str] | None) -> list[str] | None:
    held = held_databases()
    return None if held is None or kept is None else [path for path in held if path not in kept]
