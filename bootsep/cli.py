"""The ``bootsep`` command: one sub-command per DVC stage, plus tools for people.

Each command is a thin wrapper over one library call; the heavy imports happen inside the
command so that ``bootsep --help`` stays fast.
"""

from __future__ import annotations

import functools
import sys

import click

from bootsep import __version__
from bootsep.pipeline.errors import BootsepError

PARAMS_OPTION = click.option(
    "--params", "params_path", default="params.yaml", show_default=True,
    type=click.Path(dir_okay=False), help="Parameter file (one section per stage).")


def user_errors(fn):
    """Turn :class:`BootsepError` (and Ctrl-C) into a one-line message and exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BootsepError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bootsep")
def cli():
    """Bootstrap single-channel speech separation from spatial clustering of stereo mixtures.

    The DVC stages, in order: corpus, stft, spatial, confidence, train, evaluate, report.
    """


@cli.command()
@PARAMS_OPTION
@click.option("--out", default="data/corpus", show_default=True, type=click.Path(file_okay=False),
              help="Folder that receives <split>/manifest.csv (and audio for the tts corpus).")
@user_errors
def corpus(params_path, out):
    """Build (tts) or index (wsj0-2mix-spatialized, folder) the corpus: data/corpus/<split>/."""
    from bootsep.pipeline.corpus.stage import main

    main(params_path, out)


SPLIT_OPTION = click.option("--split", required=True, type=click.Choice(["train", "valid", "test"]),
                            help="Corpus split to process.")


@cli.command()
@PARAMS_OPTION
@SPLIT_OPTION
@user_errors
def stft(params_path, split):
    """STFT of the stereo pair (+ source magnitudes) into data/shards/stft/<split>/."""
    from bootsep.pipeline.stages.stft import main

    main(params_path, split)


@cli.command()
@PARAMS_OPTION
@SPLIT_OPTION
@user_errors
def spatial(params_path, split):
    """IPD features, PCA and GMM masks (paper eqs 1-3) into data/shards/spatial/<split>/."""
    from bootsep.pipeline.stages.spatial import main

    main(params_path, split)


@cli.command()
@PARAMS_OPTION
@SPLIT_OPTION
@user_errors
def confidence(params_path, split):
    """Confidence measures C_cl, C_JSD, C_post (paper eqs 4-6) into data/shards/confidence/<split>/."""
    from bootsep.pipeline.stages.confidence import main

    main(params_path, split)


@cli.command()
@PARAMS_OPTION
@click.option("--condition", required=True, help="Training condition, a key of train_conditions in params.yaml.")
@user_errors
def train(params_path, condition):
    """Train the deep-clustering model of one condition into data/models/<condition>/."""
    from bootsep.train.stage import main

    main(params_path, condition)


def main():
    cli(prog_name="bootsep")


if __name__ == "__main__":
    main()
