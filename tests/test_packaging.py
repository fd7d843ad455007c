"""environment.yml, pyproject.toml, the Makefile and CI tell one story."""

import re
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import yaml


def _pyproject(repo):
    return tomllib.loads((repo / "pyproject.toml").read_text())


def test_environment_yml_installs_the_package_extras_through_pip(repo):
    env = yaml.safe_load((repo / "environment.yml").read_text())
    deps = env["dependencies"]
    pip_lists = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert pip_lists == [["-e .[dev,notebooks,eval,web]"]], "environment.yml must install the package, not a second list"
    extras = _pyproject(repo)["project"]["optional-dependencies"]
    assert {"dev", "notebooks", "eval", "web"} <= set(extras)
    # conda's own packages: python and pip only, and python satisfies requires-python
    conda = [d for d in deps if isinstance(d, str)]
    assert sorted(c.split("=")[0] for c in conda) == ["pip", "python"]
    py = next(c for c in conda if c.startswith("python")).split("=")[1]
    low = re.search(r">=\s*(\d+\.\d+)", _pyproject(repo)["project"]["requires-python"]).group(1)
    assert tuple(map(int, py.split("."))) >= tuple(map(int, low.split(".")))


def test_dependencies_are_lower_bounds_and_keep_torchvision_out(repo):
    project = _pyproject(repo)["project"]
    every = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    names = [re.split(r"[<>=\[ ;]", d)[0].lower() for d in every]
    assert "torchvision" not in names and "torchaudio" not in names and "timm" not in names
    for dep in (d.split(";")[0] for d in every):  # version markers may say "<"
        assert "==" not in dep, dep
        if "<" in dep:
            assert dep.startswith(("diffusers", "gradio")), f"{dep}: upper bounds only where a tested API is deprecated or changes"
    assert project["scripts"]["nextgpt-mini"] == "nextgpt_mini.cli:main"


def test_ci_runs_the_readme_test_command(repo):
    ci = (repo / ".ci" / "run").read_text()
    readme = (repo / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make demo" in readme
    # the README's quick start lists the two commands first
    quick = readme.index("make demo"), readme.index("make test")
    assert quick[0] < readme.index("## Notebooks") and quick[1] < readme.index("## Notebooks")
    makefile = (repo / "Makefile").read_text()
    assert "--nbval-lax" in makefile and "notebooks/*.ipynb" in makefile and "solutions/*.ipynb" in makefile
    assert "torch==2.13.0" in makefile and 'import torch" 2>/dev/null ||' in makefile
