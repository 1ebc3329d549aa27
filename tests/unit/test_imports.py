import subprocess
import sys

import engine
import engine.policy


def test_public_api_is_pinned():
    assert set(engine.__all__) == {
        "AutellixEngine", "AutellixError", "CallResult", "CallTimings", "EngineConfig",
        "EngineNotRunningError", "InvalidRequestError", "ModelError", "PolicyConfig", "Program",
        "ProgramEndedError", "ProgramSnapshot", "PromptTooLongError", "StreamChunk",
        "UnknownProgramError", "Usage",
    }
    for name in engine.__all__:
        assert getattr(engine, name) is not None


def test_policy_package_and_simulator_never_import_vllm_or_torch():
    code = (
        "import sys, engine.policy, engine.sim, engine.config, engine.models; "
        "bad = [m for m in ('vllm', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
