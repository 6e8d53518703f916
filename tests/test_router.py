"""A litellm Router behind the LLM door: two loopback servers as two deployments of one model.

Load balancing, rpm limits, retries and fallbacks are litellm's; these tests check what llmopt
adds around them: runs spread over the deployments with every call recorded, a deployment that
fails hands its calls on, rpm limits reach the Router, bad configurations are one-line errors
before any request, and no key from the router file reaches the store.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from datadir import data_dir
from fakes import linreg_script
from harness import assert_one_line_error
from openai_server import OpenAIServer

from llmopt import RunStore
from llmopt.cli import main
from llmopt.llm.client import LLM, LLMConfigError
from llmopt.llm.router import RouterSpec
from llmopt.store import CallRecord

SECRET = "sk-router-file-SECRET-0123456789abcdef"
ENV_SECRET = "sk-router-env-SECRET-fedcba9876543210"
KEY_ENV = "LLMOPT_TEST_ROUTER_KEY"
REPO = Path(__file__).resolve().parents[1]


def deployment(api_base: str, group: str = "g", **extra: Any) -> dict[str, Any]:
    return {"model_name": group, "litellm_params": {"model": "openai/scripted", "api_base": api_base,
                                                    "api_key": SECRET}, **extra}


def write(tmp_path: Path, config: dict[str, Any], name: str = "router.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return str(path)


def dead_api_base() -> str:
    """An address nobody listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


@pytest.fixture()
def servers(openai_server) -> tuple[OpenAIServer, OpenAIServer]:
    """Two loopback servers: two deployments of one model."""
    return openai_server(linreg_script), openai_server(linreg_script)


def run_linreg(router: str, store: str, *extra: str, name: str = "r") -> int:
    return main(["run", "linreg", "--router", router, "--model", "g", "--structured", "off", "--store", store,
                 "--name", name, "--steps", "2", "--no-stop-when-solved", "--num-retries", "1", "--timeout", "5",
                 "--quiet", *extra])


def recorded_calls(store: str, name: str = "r") -> list[CallRecord]:
    with RunStore(store) as s:
        return s.calls(s.get_run(name).id)


def test_a_run_spreads_over_both_deployments_and_caches_by_group(servers, tmp_path: Path) -> None:
    a, b = servers
    store = str(tmp_path / "runs.db")
    assert run_linreg(write(tmp_path, {"model_list": [deployment(a.api_base), deployment(b.api_base)]}), store) == 0
    calls = recorded_calls(store)
    assert len(calls) >= 16 and all(c.error is None and not c.cache_hit for c in calls)
    assert a.requests and b.requests  # both deployments served
    assert len(a.requests) + len(b.requests) == len(calls)  # every request is one recorded call, no more
    assert all(c.model == "g" and c.cost_usd is None for c in calls)  # unpriced stays unknown, not $0
    # The same run over two other servers: cached by model group, so no request at all.
    with OpenAIServer(linreg_script) as c, OpenAIServer(linreg_script) as d:
        moved = write(tmp_path, {"model_list": [deployment(c.api_base), deployment(d.api_base)]}, "moved.json")
        assert run_linreg(moved, store, name="again") == 0
        assert not c.requests and not d.requests
    assert all(call.cache_hit for call in recorded_calls(store, "again"))


@pytest.mark.parametrize("failure", ["500", "closed"])
def test_a_failing_deployment_falls_back_and_every_call_is_recorded(failure: str, servers, tmp_path: Path) -> None:
    good, _ = servers
    with OpenAIServer(linreg_script, plan=lambda i: "500") as broken:
        bad_base = broken.api_base if failure == "500" else dead_api_base()
        config = {"model_list": [deployment(bad_base), deployment(good.api_base, group="backup")],
                  "router_settings": {"fallbacks": [{"g": ["backup"]}]}}
        store = str(tmp_path / "runs.db")
        # No retries: litellm does not cool down this group of one, so each retry would wait its backoff.
        assert run_linreg(write(tmp_path, config), store, "--num-retries", "0") == 0
    calls = recorded_calls(store)
    assert len(calls) >= 16 and all(c.error is None for c in calls)  # every call completed, on the fallback
    assert len(good.requests) == len(calls)
    assert all(r["model"] == "scripted" for r in good.requests)
    if failure == "500":
        assert 0 < len(broken.requests) <= len(calls)  # bounded: one try per call, then the fallback


def test_rpm_limits_reach_the_router(servers) -> None:
    """usage-based-routing-v2 keeps each deployment within its rpm; calls beyond are FAILED calls (data)."""
    a, b = servers
    config = {"model_list": [deployment(a.api_base, rpm=2), deployment(b.api_base, rpm=2)],
              "router_settings": {"routing_strategy": "usage-based-routing-v2"}}
    llm = LLM.from_router(config, "g", num_retries=0, timeout_s=5)
    llm.validate()
    out = llm.complete([{"role": "user", "content": "[w=1, b=2]"}], list(range(8)))
    assert len(a.requests) <= 2 and len(b.requests) <= 2  # within a minute: at most rpm each
    served = [c for c in out if c.ok]
    assert served and len(served) == len(a.requests) + len(b.requests)
    assert {c.deployment for c in served} <= {a.api_base, b.api_base}
    assert all("RateLimitError" in (c.error or "") for c in out if not c.ok)
    recorded = llm.config.to_dict()["router"]
    assert [d["rpm"] for d in recorded["deployments"]] == [2, 2]
    assert recorded["settings"] == {"routing_strategy": "usage-based-routing-v2"}


BAD_CONFIGS = [
    ("missing.yaml", None, "cannot read the router configuration: No such file"),
    ("bad.yaml", "model_list: [\n  - {model_name: g", "not valid YAML"),
    ("bad.json", '{"model_list": [', "not valid JSON"),
    ("bad.toml", "model_list = [", "not valid TOML"),
    ("config.ini", "[x]", "a .yaml, .yml, .json or .toml file"),
    ("empty.json", {"router_settings": {}}, "model_list is missing or empty"),
    ("nomodel.json", {"model_list": [{"model_name": "g", "litellm_params": {}}]}, "model_list[0] needs a model_name"),
    ("group.json", {"model_list": [{"model_name": "other", "litellm_params": {"model": "openai/x"}}]},
     "unknown model group 'g' (the model_names of model_list: other)"),
    ("fallback.json", {"model_list": "TWO", "router_settings": {"fallbacks": [{"g": ["nowhere"]}]}},
     "router_settings.fallbacks[0]: unknown model group 'nowhere'"),
    ("rpm.json", {"model_list": "TWO_RPM"}, "model_list[1].rpm must be a positive integer, got -5"),
    ("setting.json", {"model_list": "TWO", "router_settings": {"routing_strategy": "fastest-please"}},
     "litellm's Router refused the configuration: Invalid routing_strategy"),
    ("env.json", {"model_list": "ENV"}, f"litellm_params.api_key: environment variable {KEY_ENV} is not set"),
]


def _materialize(tmp_path: Path, name: str, content: Any, servers: tuple[OpenAIServer, OpenAIServer]) -> str:
    path = tmp_path / name
    if content is None:
        return str(path)
    if isinstance(content, dict):
        two = [deployment(s.api_base) for s in servers]
        lists = {"TWO": two, "TWO_RPM": [two[0], {**two[1], "rpm": -5}],
                 "ENV": [{**two[0], "litellm_params": {**two[0]["litellm_params"], "api_key": f"os.environ/{KEY_ENV}"}}]}
        model_list = content.get("model_list")
        content = json.dumps({**content, "model_list": lists.get(model_list, model_list)}
                             if isinstance(model_list, str) else content)
    path.write_text(content)
    return str(path)


@pytest.mark.parametrize("name, content, message", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_configs_are_one_line_before_any_request(name: str, content: Any, message: str, servers,
                                                      tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = _materialize(tmp_path, name, content, servers)
    assert run_linreg(path, str(tmp_path / "runs.db")) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, message, path)
    assert not servers[0].requests and not servers[1].requests


def test_router_excludes_api_base_and_api_key_env(servers, tmp_path: Path, capsys) -> None:
    path = write(tmp_path, {"model_list": [deployment(s.api_base) for s in servers]})
    with pytest.raises(SystemExit) as exited:  # argparse: the flags exclude each other
        run_linreg(path, str(tmp_path / "runs.db"), "--api-base", "http://127.0.0.1:9/v1")
    assert exited.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert run_linreg(path, str(tmp_path / "runs.db"), "--api-key-env", KEY_ENV) == 2
    err = capsys.readouterr().err
    assert "--api-key-env does not apply with --router" in err and len(err.strip().splitlines()) == 1
    assert not servers[0].requests and not servers[1].requests


def test_no_key_from_the_router_file_reaches_the_store(servers, tmp_path: Path, monkeypatch) -> None:
    """Literal keys and os.environ/ keys: not in the recorded config, the cache, the calls or an
    error message that echoes the Authorization header (a 400 'leak' fault on one deployment)."""
    monkeypatch.setenv(KEY_ENV, ENV_SECRET)
    a, b = servers
    a.faults.extend(["leak", "leak"])
    env_deployment = deployment(b.api_base)
    env_deployment["litellm_params"]["api_key"] = f"os.environ/{KEY_ENV}"
    store = str(tmp_path / "runs.db")
    env_deployment["rpm"] = 100
    assert run_linreg(write(tmp_path, {"model_list": [deployment(a.api_base, rpm=100), env_deployment]}), store) == 0
    assert a.injected["leak"] == 2 and a.requests and b.requests
    sent = {v for h in b.headers for k, v in h.items() if k.lower() == "authorization"}
    assert sent == {f"Bearer {ENV_SECRET}"}  # litellm resolved os.environ/ at call time
    with RunStore(store) as s:
        run = s.get_run("r")
        errors = [c.error for c in s.calls(run.id) if c.error]
    assert errors and all("***" in e and "SECRET" not in e for e in errors)
    recorded = run.config["proposer"]["llm"]["router"]["deployments"]
    assert [d["api_base"] for d in recorded] == [a.api_base, b.api_base] and recorded[0]["rpm"] == 100
    assert all("api_key" not in d for d in recorded)
    files = [f for p in tmp_path.iterdir() if p.name.startswith("runs.db")  # the store, journals, run locks
             for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    assert files and not any(secret.encode() in p.read_bytes() for p in files for secret in (SECRET, ENV_SECRET))


def test_the_scorer_spreads_over_a_router(tmp_path: Path, capsys) -> None:
    """``--scorer-router``: the prompt-optimization scorer's calls go over both deployments."""
    answer = lambda prompt, seed: "The answer is Yes."  # noqa: E731
    with OpenAIServer(answer) as a, OpenAIServer(answer) as b:
        path = write(tmp_path, {"model_list": [deployment(a.api_base, "scorer"), deployment(b.api_base, "scorer")]})
        code = main(["evaluate", "--task", "bbh/navigate", "--data-dir", str(data_dir()), "--max-examples", "12",
                     "--instruction", "Think.", "--no-baselines", "--store", str(tmp_path / "e.db"),
                     "--scorer", "scorer", "--scorer-router", path])
        assert code == 0, capsys.readouterr().err
        assert a.requests and b.requests and len(a.requests) + len(b.requests) == 12
    assert "scorer calls: 12 (0 from the cache, 0 failed)" in capsys.readouterr().out


def test_the_example_config_loads_and_records_no_key() -> None:
    spec = RouterSpec.load(REPO / "examples" / "router.yaml")
    assert spec.groups == ("qwen", "gpt-4o-mini") and spec.models("qwen") == ("openai/qwen2.5-7b-instruct",)
    record = LLM.from_router(spec, "qwen").config.to_dict()["router"]
    assert [d.get("rpm") for d in record["deployments"]] == [600, 300, None]
    assert "os.environ" not in json.dumps(record) and record["settings"]["fallbacks"] == [{"qwen": ["gpt-4o-mini"]}]
    assert "router" not in LLM.from_model("openai/x").config.to_dict()  # older runs' records are unchanged


def test_a_router_llm_pickles_without_its_router(servers) -> None:
    import pickle

    llm = LLM.from_router({"model_list": [deployment(s.api_base) for s in servers]}, "g", timeout_s=5)
    llm.validate()  # makes the Router
    copy = pickle.loads(pickle.dumps(llm))
    assert copy.config == llm.config and copy._router is None and SECRET not in repr(copy.config)
    assert copy.complete([{"role": "user", "content": "[w=1, b=2]"}], [0])[0].ok


def test_toml_and_yaml_configs_match_json(tmp_path: Path) -> None:
    (tmp_path / "r.toml").write_text('[[model_list]]\nmodel_name = "g"\n[model_list.litellm_params]\n'
                                     'model = "openai/x"\napi_base = "http://h:1/v1"\n'
                                     '[router_settings]\nrouting_strategy = "simple-shuffle"\n')
    (tmp_path / "r.yaml").write_text("model_list:\n  - model_name: g\n    litellm_params:\n      model: openai/x\n"
                                     "      api_base: http://h:1/v1\nrouter_settings:\n"
                                     "  routing_strategy: simple-shuffle\n")
    specs = [RouterSpec.load(tmp_path / n) for n in ("r.toml", "r.yaml")]
    assert specs[0].model_list == specs[1].model_list and specs[0].settings == specs[1].settings
    with pytest.raises(LLMConfigError, match="api_base and a router exclude each other"):
        LLM.from_router(specs[0], "g", api_base="http://h:2/v1")
