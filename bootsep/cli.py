"""The ``bootsep`` command: one sub-command per DVC stage, plus tools for people.

Each command is a thin wrapper over one library call; the heavy imports happen inside the
command so that ``bootsep --help`` stays fast.

Errors: a :class:`BootsepError` (bad input, params or data) is one line ``error: ...`` on
stderr and exit code 1 (``--verbose`` adds its traceback and causes); any other exception is
a bug: its full traceback and exit code 70. Diagnostics go through :mod:`logging` (the
``bootsep`` logger), configured here: summaries at INFO, ``warning: ...`` lines, all on stderr.
"""

from __future__ import annotations

import errno
import functools
import logging
import re
import sys
import traceback

import click

from bootsep import __version__
from bootsep.errors import BootsepError
from bootsep.separate.defaults import BLOCK_SECONDS, OVERLAP_SECONDS

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 70        # EX_SOFTWARE of sysexits.h: a bug, not the user's input
EXIT_INTERRUPTED = 130
_VERBOSE = "bootsep.verbose"    # key of click's Context.meta (shared by nested contexts)

# OS errors that are the machine's state, not a bug: a one-line error (exit 1), like bad input
ENVIRONMENT_ERRNOS = {errno.ENOSPC: "no space left on the device",
                      errno.EDQUOT: "disk quota exceeded",
                      errno.EROFS: "the file system is read-only"}


def environment_error(exc: OSError) -> str | None:
    """The one-line message of an OS error in :data:`ENVIRONMENT_ERRNOS` (None for others):
    the file it names (``exc.filename``, or the ``filename = '...'`` of an HDF5 message), the
    problem, and what to do."""
    problem = ENVIRONMENT_ERRNOS.get(exc.errno)
    if problem is None:
        return None
    found = re.search(r"filename = '([^']+)'", str(exc))
    where = exc.filename or (found.group(1) if found else None)
    return (f"{where + ': ' if where else ''}{problem}; make room and rerun (outputs are written "
            "under temporary names, so nothing half-written was kept)")


PARAMS_OPTION = click.option(
    "--params", "params_path", default="params.yaml", show_default=True,
    type=click.Path(dir_okay=False), help="Parameter file (one section per stage).")


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is at the time of each record
    (click's test runner swaps it per invocation)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _Formatter(logging.Formatter):
    """``message`` for INFO and DEBUG, ``warning: message`` and ``error: message`` above."""

    PREFIX = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}

    def format(self, record: logging.LogRecord) -> str:
        return self.PREFIX.get(record.levelno, "") + super().format(record)


def configure_logging(level: int = logging.INFO) -> None:
    """Show the ``bootsep`` logger's records of ``level`` and above on stderr (idempotent: a
    second call replaces the handler of the first)."""
    logger = logging.getLogger("bootsep")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


def _verbose() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(_VERBOSE))


def _user_error(exc: BaseException, message: str) -> None:
    """Exit 1 with ``error: message`` (after the traceback with ``--verbose``)."""
    if _verbose():
        click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USER_ERROR)


def user_errors(fn):
    """Turn :class:`BootsepError` and a full or read-only disk (:func:`environment_error`) into
    a one-line message and exit code 1 (with ``--verbose`` after its traceback and causes),
    Ctrl-C into exit code 130, and any other exception (a bug) into its full traceback and exit
    code 70."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BootsepError as exc:
            _user_error(exc, str(exc))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise                           # click's own: usage errors, --help, aborts
        except Exception as exc:
            message = environment_error(exc) if isinstance(exc, OSError) else None
            if message is not None:
                _user_error(exc, message)
            click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
            click.echo(f"internal error: {type(exc).__name__} (a bug in bootsep; the traceback "
                       "above says where)", err=True)
            sys.exit(EXIT_INTERNAL_ERROR)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bootsep")
@click.option("--verbose", "-v", is_flag=True,
              help="Debug messages, and the traceback and causes of an error.")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors.")
@click.pass_context
def cli(ctx, verbose, quiet):
    """Bootstrap single-channel speech separation from spatial clustering of stereo mixtures.

    The DVC stages, in order: corpus, stft, spatial, confidence, train, evaluate, report.
    """
    if verbose and quiet:
        raise click.UsageError("--verbose and --quiet exclude each other")
    ctx.meta[_VERBOSE] = verbose
    configure_logging(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


@cli.command()
@PARAMS_OPTION
@click.option("--out", default="data/corpus", show_default=True, type=click.Path(file_okay=False),
              help="Folder that receives <split>/manifest.csv (and audio for the tts corpus).")
@user_errors
def corpus(params_path, out):
    """Build (tts) or index (wsj0-2mix-spatialized, folder) the corpus: data/corpus/<split>/."""
    from bootsep.stages.s1_corpus import main

    main(params_path, out)


SPLIT_OPTION = click.option("--split", required=True, type=click.Choice(["train", "valid", "test"]),
                            help="Corpus split to process.")


@cli.command()
@PARAMS_OPTION
@SPLIT_OPTION
@user_errors
def stft(params_path, split):
    """STFT of every microphone (+ source magnitudes) into data/shards/stft/<split>/."""
    from bootsep.stages.s2_stft import main

    main(params_path, split)


TEACHER_OPTION = click.option("--teacher", "teacher", required=True,
                              help="Spatial teacher, a key of spatial.teachers in params.yaml.")


@cli.command()
@PARAMS_OPTION
@TEACHER_OPTION
@user_errors
def spatial(params_path, teacher):
    """One spatial teacher's masks of every split (the paper's eqs 1-3, or the delay model)
    into data/shards/spatial/<teacher>/<split>/."""
    from bootsep.stages.s3_spatial import main

    main(params_path, teacher)


@cli.command()
@PARAMS_OPTION
@TEACHER_OPTION
@user_errors
def confidence(params_path, teacher):
    """Confidence measures C_cl, C_JSD, C_post (paper eqs 4-6) of one teacher into
    data/shards/confidence/<teacher>/<split>/."""
    from bootsep.stages.s4_confidence import main

    main(params_path, teacher)


@cli.command()
@PARAMS_OPTION
@click.option("--condition", required=True,
              help="Training condition, a key of train_conditions in params.yaml.")
@user_errors
def train(params_path, condition):
    """Train the deep-clustering model of one condition into data/models/<condition>/."""
    from bootsep.stages.s5_train import main

    main(params_path, condition)


@cli.command()
@PARAMS_OPTION
@click.option("--round", "round_name", required=True,
              help="Self-training round, a key of self_training.rounds in params.yaml.")
@user_errors
def relabel(params_path, round_name):
    """A self-training round: the round's teacher refitted with its student's masks as a
    per-bin prior, with its confidence, into data/shards/{spatial,confidence}/<round>/."""
    from bootsep.stages.s6_relabel import main

    main(params_path, round_name)


@cli.command()
@PARAMS_OPTION
@user_errors
def labels(params_path):
    """Quality and quantity of each condition's training labels (§3.4) into data/results/labels/."""
    from bootsep.stages.s7_labels import main

    main(params_path)


@cli.command()
@PARAMS_OPTION
@user_errors
def evaluate(params_path):
    """Separate the test split with every approach and score it into data/results/eval/."""
    from bootsep.stages.s8_evaluate import main

    main(params_path)


@cli.command()
@PARAMS_OPTION
@user_errors
def realcheck(params_path):
    """Real recordings mixed as the corpus mixes, scored by trained models (a check)."""
    from bootsep.stages.s10_realcheck import main

    main(params_path)


@cli.command()
@PARAMS_OPTION
@user_errors
def report(params_path):
    """Table 1 and Figures 2-3 into data/results/."""
    from bootsep.stages.s9_report import main

    main(params_path)


@cli.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--utterance", "-u", default=None, help="Utterance id (or index) to show in detail.")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Write a figure of the utterance: log-magnitude, IPD, mask and C_post.")
@user_errors
def inspect(path, utterance, png):
    """Summarise a shard or a shard folder (or data/shards): contents, ranges, NaNs, confidences."""
    from bootsep.pipeline.storage.inspect_shards import main

    main(path, utterance, png)


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--model", required=True, type=click.Path(),
              help="Trained model folder, e.g. data/models/alpha_1.")
@click.option("--out", required=True, type=click.Path(),
              help="Output folder: <name>_s1.wav, <name>_s2.wav, ... and <name>.json per input.")
@click.option("--approach", default="auto", show_default=True,
              type=click.Choice(["auto", "spatial", "model", "ensemble"]),
              help="auto: the model for mono input; for stereo/multichannel input the "
                   "ensemble the evaluate stage measured best for the model (ensemble.json).")
@click.option("--num-sources", type=int, default=None,
              help="Sources to separate (default: the model's, 2).")
@click.option("--overwrite", is_flag=True,
              help="Write into an output folder that already has files.")
@click.option("--device", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--threshold", type=float, default=None,
              help="Ensemble threshold on the spatial mean confidence (overrides --ensemble-file).")
@click.option("--ensemble-file", type=click.Path(dir_okay=False), default=None,
              help="ensemble.json of the evaluate stage [default: found from the model's path, "
                   "<model>/../../results/eval/ensemble.json].")
@click.option("--block-seconds", type=float, default=BLOCK_SECONDS, show_default=True,
              help="Long input is processed in blocks of this length.")
@click.option("--overlap-seconds", type=float, default=OVERLAP_SECONDS, show_default=True,
              help="Overlap between blocks (source order alignment and cross-fade).")
@user_errors
def separate(inputs, model, out, approach, num_sources, overwrite, device, threshold, ensemble_file,
             block_seconds, overlap_seconds):
    """Separate your own wav/flac recordings (files or folders) with a trained model."""
    from bootsep.separate.command import main

    main(inputs, model, out, approach=approach, num_sources=num_sources, overwrite=overwrite,
         device=device, threshold=threshold, ensemble_file=ensemble_file,
         block_seconds=block_seconds, overlap_seconds=overlap_seconds)


def main():
    cli(prog_name="bootsep")


if __name__ == "__main__":
    main()
