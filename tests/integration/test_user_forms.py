"""The forms a new user runs us in, each in a fresh Python process with no
``if __name__ == "__main__":`` guard: a script, ``python -m``, ``python -c``, the REPL
and a Jupyter notebook. vLLM spawns its engine core; the child must not re-run the
user's module (``autellix_engine.frontend.main_guard``)."""

import os
import subprocess
import sys
import textwrap

import pytest

#: What a user writes, as in every LangChain example (the tiny model keeps it fast).
CHAT_MODEL_LINES = [
    "from autellix_lg import AutellixChatModel",
    "llm = AutellixChatModel(model='tiny', temperature=0, max_tokens=4,"
    " engine_config={'max_num_seqs': 2, 'kv_cache_bytes': 64 << 20})",
    "print('ANSWER:', repr(llm.invoke('What is the capital of France?').content))",
]
#: The engine API from a script: asyncio.run at module level.
ENGINE_LINES = [
    "import asyncio",
    "from autellix_engine import AutellixEngine, EngineConfig",
    "async def main():",
    "    cfg = EngineConfig(model='tiny', max_num_seqs=2, kv_cache_bytes=64 << 20)",
    "    async with AutellixEngine(cfg) as eng:",
    "        out = await eng.generate('Hello', max_tokens=4)",
    "    print('ANSWER:', repr(out.text), out.usage.completion_tokens)",
    "asyncio.run(main())",
]
TIMEOUT_S = 300


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "ERROR"}


def _run(args, cwd, stdin=None) -> str:
    done = subprocess.run(args, cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ANSWER:" in done.stdout, (done.stdout[-2000:], done.stderr[-3000:])
    assert "bootstrapping phase" not in done.stderr
    return done.stdout


def test_a_plain_script(tmp_path):
    (tmp_path / "script.py").write_text("\n".join(CHAT_MODEL_LINES) + "\n")
    out = _run([sys.executable, "script.py"], tmp_path)
    assert out.count("ANSWER:") == 1  # the child did not run the script again


def test_a_plain_scripts_stdout_is_its_own_and_a_bad_argument_wedges_nothing(tmp_path):
    """A new user's environment (no logging variables): vLLM's logs stay off stdout,
    the engine says one line on stderr, and a wrongly typed argument is refused
    without hurting the next call; the interpreter exits cleanly."""
    lines = CHAT_MODEL_LINES[:2] + [
        "try:",
        "    llm.invoke('Hi', seed='123')",
        "except ValueError as e:",
        "    print('REFUSED', 'seed' in str(e))",
        "print('ALIVE', llm.invoke('Hi again').content is not None)",
    ]
    (tmp_path / "app.py").write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VLLM_", "TRANSFORMERS_VERBOSITY"))}
    done = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=TIMEOUT_S, env={**env, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["REFUSED True", "ALIVE True"], done.stdout[-3000:]
    assert "autellix: engine started (tiny, atlas) in" in done.stderr
    for noise in ("Traceback", "force killing", " INFO "):
        assert noise not in done.stderr, done.stderr[-3000:]


def test_a_module_run_with_dash_m_using_the_engine_api(tmp_path):
    (tmp_path / "agent_job.py").write_text("\n".join(ENGINE_LINES) + "\n")
    out = _run([sys.executable, "-m", "agent_job"], tmp_path)
    assert out.count("ANSWER:") == 1


def test_python_dash_c(tmp_path):
    _run([sys.executable, "-c", "; ".join(CHAT_MODEL_LINES)], tmp_path)


def test_the_interactive_interpreter(tmp_path):
    _run([sys.executable, "-i", "-q"], tmp_path, stdin="\n".join(CHAT_MODEL_LINES) + "\n")


def test_a_jupyter_notebook(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent("\n".join(CHAT_MODEL_LINES[:2]))),
                nbformat.v4.new_code_cell(CHAT_MODEL_LINES[2])]
    old = dict(os.environ)
    os.environ.update(_env())  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    outputs = [o.get("text", "") for o in nb.cells[1].outputs if o.output_type == "stream"]
    assert any("ANSWER:" in text for text in outputs), nb.cells[1].outputs
