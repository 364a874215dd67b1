"""``verify``: build the images, run the examples in-process, through the serving container and
through the batch container, and compare.

Order: the examples are read first (a bad file fails before any build); then in-process (the
cheapest, and the reference); then each image is built (cached layers make this quick) and its
container run. Every container is removed before ``verify`` returns or raises, whatever
happened, also on Ctrl-C and SIGTERM (see ``containers``).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from ..compiler.pipeline import Compiled
from ..compiler.shipping import ModelFiles
from ..compiler.write import write_tree
from ..image import BuildError, Step, build_image, connect, left_out_note, model_files
from ..runtime_stub.config import ModelConfig
from .containers import ContainerRun, interrupt_on_sigterm
from .examples import load_examples
from .paths import PathResult, in_process, through_batch, through_serving
from .report import Report, compare

__all__ = ["DEFAULT_TIMEOUT", "PATHS", "verify"]

PATHS = ("in-process", "serving", "batch")
DEFAULT_TIMEOUT = 300.0
Say = Callable[[str], None]


def verify(compiled: Compiled, *, client: Any = None, timeout: float = DEFAULT_TIMEOUT,
           say: Say | None = None) -> Report:
    """Run the spec's examples three ways and compare them.

    Args:
        compiled: a fresh compile of the spec.
        client: a ``docker.DockerClient`` (default: :func:`pymlc.image.connect`).
        timeout: seconds each container may take (to become ready, or to finish its job).
        say: receives progress lines for people.

    Returns:
        The report; ``report.ok`` is False on any failure or disagreement.

    Raises:
        ExamplesError: the spec has no examples, or they cannot be read.
        EngineUnavailableError: no Docker engine.
    """
    tell = say or (lambda _line: None)
    root = compiled.spec_path.parent.resolve()
    with tempfile.TemporaryDirectory(prefix=f"pymlc-verify-{compiled.plan.name}-") as tmp:
        work = Path(tmp)
        write_tree(work / "generated", compiled.artifacts)
        config = ModelConfig.load(work / "generated" / "model.json")
        examples = load_examples(config, root)
        tell(f"{examples.rows} example row(s); in-process ...")
        results = [in_process(config, root, examples)]
        client = client or connect()
        files = model_files(compiled)
        note = left_out_note(files)
        if note:
            tell(note)
        with _cleanup(ContainerRun(client)) as run:
            results.append(_containerised("serving", compiled, files, run, tell, lambda image:
                           through_serving(run, image, config, examples, work / "serving",
                                           timeout=timeout)))
            results.append(_containerised("batch", compiled, files, run, tell, lambda image:
                           through_batch(run, image, config, examples, work / "batch",
                                         config_in_image=compiled.plan.layout.model_config_path,
                                         timeout=timeout)))
    return compare(compiled.plan.name, compiled.plan.version, examples, results,
                   [f.name for f in config.outputs])


def _containerised(target: str, compiled: Compiled, files: ModelFiles, run: ContainerRun,
                   tell: Say, go: Callable[[str], PathResult]) -> PathResult:
    started = time.monotonic()
    tell(f"{target}: building the image ...")
    try:
        built = build_image(compiled, target=target, client=run.client,
                            progress=_BuildLines(tell, target), files=files)
    except BuildError as exc:
        where = f" at {exc.step}" if exc.step else ""
        tail = "".join(f"\n  | {line}" for line in exc.tail[-10:])
        return PathResult(target, error=f"the image build failed{where}: {exc.message}{tail}",
                          seconds=time.monotonic() - started)
    cached = sum(s.cached for s in built.steps)
    tell(f"{target}: image {built.tags[0]} ({cached} of {len(built.steps)} steps cached,"
         f" {built.seconds:.1f} s); running the container ...")
    result = go(built.id)
    tell(f"{target}: {_outcome(result)} in {result.seconds:.1f} s")
    return result


def _outcome(result: PathResult) -> str:
    if result.error:
        return "failed"
    return "not supported" if result.unsupported else "done"


@contextmanager
def _cleanup(run: ContainerRun) -> Iterator[ContainerRun]:
    with ExitStack() as stack:
        if threading.current_thread() is threading.main_thread():
            stack.enter_context(interrupt_on_sigterm())
        try:
            yield run
        finally:
            run.close()


class _BuildLines:
    """Build progress as one line per step that was not cached (cached steps are quick)."""

    def __init__(self, tell: Say, target: str) -> None:
        self.tell = tell
        self.target = target

    def step_started(self, step: Step) -> None:
        pass

    def step_output(self, step: Step, line: str) -> None:
        pass

    def step_finished(self, step: Step) -> None:
        if not step.cached and step.seconds >= 1.0:
            text = " ".join(step.instruction.split())
            self.tell(f"{self.target}:   {step.seconds:5.1f} s  {text[:80]}")
