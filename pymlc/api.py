"""The Python API: what the ``pymlc`` commands do, for notebooks and scripts.

::

    import pymlc

    model = pymlc.load("specs/fare-estimator")      # validated and compiled, or SpecError
    model.check_examples()                           # the spec's examples, in this process
    fares = model.predict(trips)                     # DataFrame in, DataFrame out, in-process
    with model.serve() as client:                    # a local server on a temporary socket
        fares = client.predict(trips)                # ... called over gRPC (pymlc.Client)
    model.build()                                    # generated/ and pyml.lock, as `pymlc build`
    built = model.image()                            # the serving image, loaded once to check it
    report = model.verify()                          # in-process, serving and batch images agree
    model.batch("SELECT * FROM parquet.`trips.parquet`", "scores.fares")

In-process prediction goes through the runtime's ``Predictor``, the class the server and the
Spark job use: the same checks and conversions. ``serve`` and ``batch`` run the ``pymlc serve``
and ``pymlc batch`` commands as child processes, exactly as a terminal would (a notebook's
kernel keeps running if a model crashes); a batch job's progress lines go to this process's
stderr, and interrupting the kernel stops the job cleanly (its table is left as it was).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .client import Client, ClientError
from .compiler.errors import PymlcError

if TYPE_CHECKING:
    import pandas as pd

    from .compiler.pipeline import Compiled
    from .image.build import BuiltImage
    from .runtime_stub.examples import ExampleResult
    from .runtime_stub.predict import Predictor
    from .verify.report import Report

__all__ = ["BatchError", "ExamplesError", "Model", "ServeError", "load"]

_SERVE_START_TIMEOUT = 120.0


class ExamplesError(PymlcError):
    """The spec's examples do not run, or do not match their expected output.

    Attributes:
        problems: one line per problem.
    """

    def __init__(self, name: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(f"{name}: the examples fail:\n  " + "\n  ".join(self.problems))


class ServeError(PymlcError):
    """The local server did not start; the message holds its last lines."""


class BatchError(PymlcError):
    """The batch job failed (the table is left as it was) or was stopped."""


def load(spec: str | Path) -> Model:
    """Load, validate and compile a spec.

    Args:
        spec: a ``pyml.yaml``, or the folder holding one.

    Raises:
        SpecError: the spec (or its lock) is invalid; ``str(error)`` lists every problem
            with its line and column, as ``pymlc validate`` prints them.
    """
    from .compiler.pipeline import SPEC_FILE, compile_spec

    path = Path(spec)
    return Model(compile_spec(path / SPEC_FILE if path.is_dir() else path))


class Model:
    """One compiled spec and what can be done with it.

    Attributes:
        compiled: the compiler's result (plan, generated files, lock).
        name, version, kind: the model's, from the spec.
        spec_path: the ``pyml.yaml``.
    """

    def __init__(self, compiled: Compiled) -> None:
        self.compiled = compiled
        self.spec_path = compiled.spec_path
        self.name, self.version = compiled.plan.name, compiled.plan.version
        self.kind = compiled.plan.model.kind

    def __repr__(self) -> str:
        return f"<pymlc.Model {self.name} {self.version} ({self.kind}) from {self.spec_path}>"

    @property
    def warnings(self) -> tuple[str, ...]:
        """The spec's warnings, one line each (``file:line:col: warning[...]: ...``)."""
        return tuple(str(w) for w in self.compiled.warnings)

    # --- in-process ---------------------------------------------------------------------------

    @cached_property
    def predictor(self) -> Predictor:
        """The model loaded in this process, wrapped in the spec's checks (loaded once)."""
        from .runtime_stub.config import ModelConfig
        from .runtime_stub.predict import Predictor

        name = self.compiled.plan.layout.model_config
        text = next(a.content for a in self.compiled.artifacts if a.path == name)
        root = self.spec_path.parent.resolve()
        return Predictor(ModelConfig.from_json(text, root / "generated" / name), root)

    def predict(self, data: pd.DataFrame | Mapping[str, Any]) -> Any:
        """Score ``data`` in this process, through the same checks as the server.

        Args:
            data: a DataFrame of the spec's inputs (dataframe model), or input name -> array.

        Returns:
            A DataFrame of the spec's outputs, or output name -> array for a tensor model.

        Raises:
            InputError, OutputError: the input or the model's output breaks the spec.
        """
        if self.kind == "dataframe":
            return self.predictor.predict_frame(data)
        return self.predictor.predict_tensors(data)

    def check_examples(self) -> ExampleResult | None:
        """Run the spec's examples in this process (as ``pymlc validate`` does).

        Returns:
            What was scored and compared; None when the spec has no examples.

        Raises:
            ExamplesError: the model does not load, the examples break the spec, ``predict``
                raises, or the output differs from the expected one beyond the tolerance;
                ``problems`` holds one line per problem.
        """
        from .runtime_stub.checks import InputError, OutputError
        from .runtime_stub.examples import run_examples
        from .runtime_stub.loader import ModelLoadError

        try:
            result = run_examples(self.predictor, self.spec_path.parent.resolve())
        except ModelLoadError as exc:
            problems = [f"model: {exc}"]
        except InputError as exc:
            problems = [f"example input: {problem}" for problem in exc.problems]
        except OutputError as exc:
            problems = [f"model output: {problem}" for problem in exc.problems]
        except Exception as exc:  # the user's predict may raise anything
            problems = [f"predict raised {type(exc).__name__}: {exc}"]
        else:
            if result is None or not result.mismatches:
                return result
            problems = list(result.mismatches)
        raise ExamplesError(self.name, problems)

    # --- files ----------------------------------------------------------------------------------

    def build(self, out: str | Path | None = None) -> list[Path]:
        """Write the generated files (default: the spec's ``generated/``) and ``pyml.lock``.

        Returns:
            The files that changed (an up-to-date tree returns an empty list).
        """
        from .compiler.write import write_file, write_tree

        folder = Path(out) if out is not None else self.spec_path.parent / "generated"
        changed = write_tree(folder, self.compiled.artifacts)
        if write_file(self.compiled.lock_path, self.compiled.lock_text):
            changed.append(self.compiled.lock_path)
        return changed

    # --- processes ------------------------------------------------------------------------------

    @contextmanager
    def serve(self, *, port: int | None = None, timeout: float = 30.0) -> Iterator[Client]:
        """Serve the model locally for the ``with`` block; yields a connected ``Client``.

        Runs ``pymlc serve`` as a child process, on a socket in a temporary folder (or on
        127.0.0.1:``port`` with ``port``), and stops it (SIGTERM, in-flight calls finish)
        when the block ends.

        Args:
            port: serve on this TCP port of 127.0.0.1 instead of a Unix socket.
            timeout: the client's seconds per call.

        Raises:
            ServeError: the server did not start (the model did not load, a busy port, ...).
        """
        with tempfile.TemporaryDirectory(prefix=f"pymlc-{self.name}-") as folder:
            socket = Path(folder) / "model.sock"
            where = ["--port", str(port)] if port is not None else ["--socket", str(socket)]
            log = Path(folder) / "serve.log"
            with log.open("wb") as sink:
                server = subprocess.Popen(
                    [sys.executable, "-m", "pymlc", "serve", str(self.spec_path), *where],
                    stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                target = f"127.0.0.1:{port}" if port is not None else f"unix:{socket}"
                client = _wait_serving(server, log, target, timeout)
                with client:
                    yield client
            finally:
                _stop(server)

    def image(self, *, target: str = "serving", load_check: bool = True,
              load_timeout: float = 120.0) -> BuiltImage:
        """Build the model's image (``serving`` or ``batch``) and load the model in it once.

        Raises:
            BuildError: the build failed; LoadCheckError: the model does not load in the
            image (the image's tags are removed, as ``pymlc image`` does).
        """
        from .image import build_image, connect
        from .image.loadcheck import check_model_loads, untag

        client = connect()
        built = build_image(self.compiled, target=target, client=client)
        if load_check:
            try:
                check_model_loads(client, built.id, self.compiled.plan, timeout=load_timeout)
            except Exception:
                untag(client, built)
                raise
        return built

    def verify(self, *, timeout: float = 300.0) -> Report:
        """Run the examples in-process, in the serving image and in the batch image; compare.

        Returns:
            The report (``report.ok``; ``report.problems`` lists every disagreement).
        """
        from .verify import verify

        return verify(self.compiled, timeout=timeout)

    def batch(self, query: str, table: str, *, mode: str | None = None,
              partition: Mapping[str, str] | None = None, warehouse: str | Path | None = None,
              master: str | None = None) -> None:
        """Score a Spark SQL query's rows into ``table`` (``DB.TABLE``), as ``pymlc batch``.

        Args:
            query: the query whose rows are scored.
            table: the output table; replaced atomically (``mode="overwrite"``, the spec's
                default) or appended to.
            partition: write this one static partition (key -> value).
            warehouse: the local warehouse and metastore folder.
            master: the Spark master URL (default ``local[*]``).

        Raises:
            BatchError: the job failed or was stopped; the table is as it was.
        """
        argv = [sys.executable, "-m", "pymlc", "batch", str(self.spec_path),
                "--query", query, "--output-table", table]
        for flag, value in (("--mode", mode), ("--warehouse", warehouse), ("--master", master)):
            if value is not None:
                argv += [flag, str(value)]
        for key, value in (partition or {}).items():
            argv += ["--partition", f"{key}={value}"]
        code = _run(argv)
        if code != 0:
            raise BatchError(f"{self.name}: the batch job into {table} failed (exit {code});"
                             " its lines above say why; the table is unchanged")


def _wait_serving(server: subprocess.Popen[bytes], log: Path, target: str,
                  timeout: float) -> Client:
    deadline = time.monotonic() + _SERVE_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ServeError(f"pymlc serve exited with {server.returncode}:\n"
                             + _tail(log))
        if "pymlc: serving " in log.read_text(errors="replace"):
            try:
                return Client(target, timeout=timeout)
            except ClientError as exc:
                raise ServeError(f"the server started but cannot be called: {exc}") from None
        time.sleep(0.05)
    _stop(server)
    raise ServeError(f"pymlc serve did not report ready within {_SERVE_START_TIMEOUT:.0f} s:\n"
                     + _tail(log))


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _run(argv: Sequence[str]) -> int:
    """Run a ``pymlc`` command in the foreground; Ctrl-C stops it cleanly, then re-raises."""
    job = subprocess.Popen(list(argv), env=dict(os.environ))
    try:
        return job.wait()
    except KeyboardInterrupt:
        job.terminate()
        job.wait()
        raise
