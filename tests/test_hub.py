"""The checkpoint cache (pipeflow.hub) against a real HTTP server on localhost, and
load_weights: published weights fetched through the cache, checkpoint files in the
containers training scripts save them in, and the errors for files that don't fit."""
import functools
import hashlib
import http.server
import os
import socket
import threading

import numpy as np
import pytest

import pipeflow as pf
from pipeflow import hub
from pipeflow.io import CheckpointError
from pipeflow.models import SmallCNN, resnet18, resnet20
from pipeflow.models._api import Preprocess, Weights, WeightsEnum, build
from pipeflow.models.weights_loading import load_weights

NAME = "smallcnn-ck.pth"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the server's folder, counts requests; /short announces more than it sends."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.requests, httpd.root = [], root
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PIPEFLOW_OFFLINE", raising=False)
    return tmp_path / "home" / "checkpoints"


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _state(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _assert_same_state(model, state):
    got = _state(model)
    assert got.keys() == state.keys()
    for k in state:
        np.testing.assert_array_equal(got[k], state[k], err_msg=k)


@pytest.fixture
def published(server):
    """A SmallCNN checkpoint on the server, as a CIFAR ResNet trainer saves one: under
    'state_dict', keys prefixed 'module.' by DataParallel. -> (url, sha256, model state)."""
    pf.manual_seed(1)
    model = SmallCNN()
    pf.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
             "best_prec1": 91.7}, server.root / NAME)
    return f"{server.url}/{NAME}", _sha256(server.root / NAME), _state(model)


def test_cache_dir_follows_pipeflow_home(home):
    assert hub.checkpoint_dir() == str(home)


def test_downloads_once_with_progress_then_uses_the_cache(server, home, published, capsys):
    url, sha, _ = published
    path = hub.cached_checkpoint(url, sha[:8], progress=True)
    assert path == str(home / NAME)
    assert _sha256(home / NAME) == sha
    assert f"Downloading {NAME}" in capsys.readouterr().err
    assert hub.cached_checkpoint(url, sha[:8]) == path
    assert server.requests == [f"/{NAME}"]
    assert os.listdir(home) == [NAME]  # no temporary file left


def test_hash_mismatch_is_refused_and_nothing_kept(server, home, published):
    url, sha, _ = published
    wrong = "0" * 8 if not sha.startswith("0" * 8) else "f" * 8
    with pytest.raises(hub.IntegrityError) as err:
        hub.cached_checkpoint(url, wrong, progress=False)
    message = str(err.value)
    assert str(home / NAME) in message and wrong in message and sha[:8] in message
    assert (err.value.expected, err.value.actual) == (wrong, sha[:8])
    assert os.listdir(home) == []


def test_damaged_cached_file_is_downloaded_again(server, home, published):
    url, sha, _ = published
    path = hub.cached_checkpoint(url, sha[:8], progress=False)
    with open(path, "r+b") as f:
        f.truncate(100)
    assert hub.cached_checkpoint(url, sha[:8], progress=False) == path
    assert _sha256(home / NAME) == sha and len(server.requests) == 2
    assert os.listdir(home) == [NAME]


def test_offline_refuses_a_damaged_cached_file(server, home, published, monkeypatch):
    url, sha, _ = published
    path = hub.cached_checkpoint(url, sha[:8], progress=False)
    with open(path, "r+b") as f:
        f.truncate(100)
    monkeypatch.setenv("PIPEFLOW_OFFLINE", "1")
    with pytest.raises(hub.OfflineError, match="fails its sha256 check") as err:
        hub.cached_checkpoint(url, sha[:8])
    assert url in str(err.value) and path in str(err.value)
    assert len(server.requests) == 1


def test_offline_names_the_url_and_destination_and_never_connects(server, home, published,
                                                                   monkeypatch):
    url, sha, _ = published
    monkeypatch.setenv("PIPEFLOW_OFFLINE", "1")
    with pytest.raises(hub.OfflineError) as err:
        hub.cached_checkpoint(url, sha[:8])
    assert url in str(err.value) and str(home / NAME) in str(err.value)
    assert server.requests == []
    monkeypatch.delenv("PIPEFLOW_OFFLINE")
    hub.cached_checkpoint(url, sha[:8], progress=False)
    monkeypatch.setenv("PIPEFLOW_OFFLINE", "1")  # a cached file is used offline
    assert hub.cached_checkpoint(url, sha[:8]) == str(home / NAME)
    assert len(server.requests) == 1


def test_http_error_names_the_url(server, home):
    url = f"{server.url}/missing.pth"
    with pytest.raises(hub.DownloadError, match="404") as err:
        hub.cached_checkpoint(url, "abcd", progress=False)
    assert url in str(err.value)
    assert os.listdir(home) == []


def test_connection_refused_names_the_url(home):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.pth"
    with pytest.raises(hub.DownloadError, match="refused") as err:
        hub.cached_checkpoint(url, "abcd", progress=False)
    assert url in str(err.value)


def test_cut_off_download_is_an_error_and_leaves_nothing(server, home):
    with pytest.raises(hub.DownloadError, match="10 of 1000 bytes"):
        hub.cached_checkpoint(f"{server.url}/short", "ab", progress=False)
    assert os.listdir(home) == []


def test_a_sha256_prefix_must_be_hex(home):
    with pytest.raises(ValueError, match="hexadecimal digits"):
        hub.cached_checkpoint("http://127.0.0.1:1/x.pth", "not-hex")


def test_build_downloads_published_weights(server, home, published):
    url, sha, state = published
    entry = Weights(url=url, sha256_prefix=sha[:8], preprocess=Preprocess(8, 8),
                    meta={"categories": [str(i) for i in range(10)]})
    TinyWeights = WeightsEnum("TinyWeights", {"V1": entry, "DEFAULT": entry})
    for weights in ("DEFAULT", TinyWeights.V1):
        model = build(SmallCNN, TinyWeights, weights, progress=False)
        _assert_same_state(model, state)
    assert server.requests == [f"/{NAME}"]


# --- checkpoint files ------------------------------------------------------------------------

def test_real_builder_loads_a_dataparallel_checkpoint(tmp_path):
    pf.manual_seed(2)
    state = _state(resnet20())
    path = tmp_path / "resnet20.th"
    pf.save({"state_dict": {f"module.{k}": pf.tensor(v) for k, v in state.items()},
             "best_prec1": 91.7}, path)
    _assert_same_state(resnet20(weights=path), state)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torch_saved_checkpoint_under_a_container_key(tmp_path, zip_format):
    torch = pytest.importorskip("torch", reason="torch writes the reference checkpoint")
    pf.manual_seed(3)
    state = _state(SmallCNN())
    path = tmp_path / "torch.pt"
    torch.save({"model_state_dict": {k: torch.from_numpy(v) for k, v in state.items()},
                "epoch": 7}, path, _use_new_zipfile_serialization=zip_format)
    _assert_same_state(load_weights(SmallCNN(), path), state)


def test_safetensors_checkpoint(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    pf.manual_seed(4)
    state = _state(resnet20())
    path = tmp_path / "resnet20.safetensors"
    safetensors_numpy.save_file(state, str(path))
    _assert_same_state(resnet20(weights=path), state)


def test_a_file_without_a_state_dict_is_named(tmp_path):
    path = tmp_path / "meta.pt"
    pf.save({"epoch": 3, "arch": "resnet20"}, path)
    with pytest.raises(CheckpointError, match="not a state dict") as err:
        load_weights(SmallCNN(), path)
    assert str(path) in str(err.value) and "'epoch'" in str(err.value)


def test_a_checkpoint_for_another_architecture_names_the_keys(tmp_path):
    path = tmp_path / "resnet18.pt"
    pf.save(resnet18().state_dict(), path)
    with pytest.raises(CheckpointError, match="Missing key") as err:
        resnet20(weights=path)
    assert str(path) in str(err.value) and "layer4" in str(err.value)
