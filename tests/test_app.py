"""The app without a browser: studio logic (gallery, uploads, limits, streaming, Continue, results)
and the `generate` endpoint called through gradio_client the way a script would."""

from __future__ import annotations

import json
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import symusic
from app_support import MAESTRO, app_checkpoint, stopped_after_two_frames

import studio
from comagen.bundle.checkpoint import FILES, Bundle
from comagen.errors import ComagenError, DrumOnlyError, EmptyMidiError, MidiError, MidiTooLongError, NotMidiError
from comagen.generation.prompt import Prompt
from comagen.generation.settings import Settings
from comagen.render.audio import AudioUnavailableError

ELISE = 'L. van Beethoven: Bagatelle in A minor, WoO 59 "Für Elise"'


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return app_checkpoint(tmp_path_factory.mktemp("app_ckpt"))


@pytest.fixture(scope="module")
def bundle(checkpoint: Path) -> Bundle:
    return studio.Checkpoints({"test": checkpoint}).get("test")


def _drums(path: Path) -> Path:
    score = symusic.Score(480)
    track = symusic.Track("drums", 0, True)
    track.notes.append(symusic.Note(0, 240, 36, 100))
    score.tracks.append(track)
    path.write_bytes(score.dumps_midi())
    return path


# ------------------------------------------------------------------------------ gallery and checkpoints


def test_gallery_names_shipped_prompts_from_their_readme_and_starts_with_nothing(gallery: dict) -> None:
    labels = list(gallery)
    assert labels[0] == studio.NOTHING and gallery[studio.NOTHING].path is None
    assert ELISE in labels and gallery[ELISE].path.name == "beethoven_fur_elise.mid"
    assert len(labels) == 1 + len(list(studio.PROMPTS_DIR.glob("*.mid")))


def test_maestro_gallery_lists_test_split_first_with_unique_labels() -> None:
    if not (MAESTRO / "maestro-v3.0.0.csv").is_file():
        pytest.skip("no MAESTRO folder")
    items = studio.maestro_prompts(MAESTRO)
    assert items[0].label.startswith("MAESTRO test: ")
    assert len({i.label for i in items}) == len(items)
    splits = [i.label.split(":")[0] for i in items]
    assert splits.index("MAESTRO train") > splits.index("MAESTRO validation") > 0


def test_checkpoint_list_has_complete_bundles_only(tmp_path: Path, checkpoint: Path) -> None:
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    good = tmp_path / "good"
    good.mkdir()
    for f in FILES:
        (good / f).write_bytes((checkpoint / f).read_bytes())
    assert list(studio.find_checkpoints(tmp_path)) == ["good"]
    assert list(studio.find_checkpoints(tmp_path, extra=str(checkpoint)))[0] == str(checkpoint)
    with pytest.raises(ComagenError, match="unknown checkpoint"):
        studio.Checkpoints({}).get("nope")


def test_the_menu_says_when_a_checkpoint_plays_far_from_the_pianist(tmp_path: Path) -> None:
    from studio.catalog import CLOSENESS_KEY, ROLE_KEY, menu_label

    for name, summary in (("near", {CLOSENESS_KEY: 0.7}), ("far", {CLOSENESS_KEY: 0.2, ROLE_KEY: "the small one"}),
                          ("unmeasured", {})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"summary": summary}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    assert menu_label("near", tmp_path / "near") == "near (closeness to the pianist 0.70)"
    assert menu_label("far", tmp_path / "far") == "far: the small one (plays less like the pianist: closeness 0.20)"
    assert menu_label("unmeasured", tmp_path / "unmeasured") == "unmeasured"
    assert menu_label("broken", tmp_path / "broken") == "broken"
    shipped = {name: label for label, name in studio.Checkpoints(studio.find_checkpoints()).choices}
    assert shipped["default"].startswith("default: the fast small model (")


def test_window_sliders_follow_the_checkpoint(bundle: Bundle) -> None:
    sliders = studio.window_sliders(bundle)
    scales = len(bundle.config.windows)
    assert [s["visible"] for s in sliders] == [True] * scales + [False] * (studio.MAX_SCALES - scales)
    assert sliders[0]["maximum"] == bundle.config.window_cap and sliders[0]["value"] == bundle.config.windows[0]


# ------------------------------------------------------------------------------ uploads and limits


def _dense(path: Path) -> Path:
    """20,000 notes in one second: more tokens than any prompt may hold."""
    score = symusic.Score(480)
    track = symusic.Track("piano", 0, False)
    for i in range(20000):
        track.notes.append(symusic.Note(i * 960 // 20000, 10, 21 + i % 88, 80))
    score.tracks.append(track)
    path.write_bytes(score.dumps_midi())
    return path


@pytest.mark.parametrize("make, error", [
    (lambda p: p.write_bytes(b"MThd\x00\x00\x00\x06garbage"), MidiError),
    (lambda p: p.write_bytes(b""), EmptyMidiError),
    (lambda p: p.write_bytes(b"hello, not a midi file at all"), NotMidiError),
    (_drums, DrumOnlyError),
    (lambda p: p.write_bytes(b"MThd" + bytes(studio.UPLOAD_MAX_BYTES)), MidiTooLongError),
    (_dense, MidiTooLongError),
    (lambda p: None, MidiError),  # gone: expired from the cache while its request waited
], ids=["corrupt", "empty", "not-midi", "drums", "too-big", "too-dense", "gone"])
def test_bad_uploads_give_one_clear_line_naming_the_file(tmp_path: Path, bundle: Bundle, gallery: dict,
                                                         make, error) -> None:
    upload = tmp_path / "mine.mid"
    make(upload)
    with pytest.raises(error) as info:
        studio.resolve_prompt(bundle, upload, gallery, ELISE, 8)
    assert str(info.value).startswith("mine.mid: ") and "\n" not in str(info.value)


def test_non_midi_file_name_is_refused(tmp_path: Path, bundle: Bundle, gallery: dict) -> None:
    upload = tmp_path / "song.mp3"
    upload.write_bytes(b"ID3")
    with pytest.raises(NotMidiError, match="song.mp3: not a .mid"):
        studio.resolve_prompt(bundle, upload, gallery, ELISE, 8)


def test_prompt_keeps_first_seconds_and_upload_wins(tmp_path: Path, bundle: Bundle, gallery: dict) -> None:
    short, name = studio.resolve_prompt(bundle, None, gallery, ELISE, 4)
    longer, _ = studio.resolve_prompt(bundle, None, gallery, ELISE, 10)
    assert name == "beethoven_fur_elise" and 0 < len(short.ids) < len(longer.ids) and short.seconds == 4.0
    upload = tmp_path / "x.midi"
    upload.write_bytes((studio.PROMPTS_DIR / "satie_gymnopedie_1.mid").read_bytes())
    assert studio.resolve_prompt(bundle, upload, gallery, ELISE, 4)[1] == "x"
    assert studio.resolve_prompt(bundle, None, gallery, studio.NOTHING, 4)[0].ids == []


def test_settings_enforce_limits_and_draw_a_seed(bundle: Bundle) -> None:
    req = studio.app_request(bundle, Settings(seconds=10, seed=7, windows=tuple(bundle.config.windows)), False)
    assert req.seed == 7 and req.max_tokens == studio.TOKEN_CAP and req.windows is None and req.form is None
    seeds = {studio.app_request(bundle, Settings(), True).seed for _ in range(3)}
    assert len(seeds) > 1
    narrow = studio.app_request(bundle, Settings(windows=(2,) * studio.MAX_SCALES))
    assert narrow.windows == [2] * len(bundle.config.windows)
    for bad in (Settings(seconds=studio.MAX_SECONDS + 1), Settings(variations=studio.MAX_VARIATIONS + 1)):
        with pytest.raises(ComagenError):
            studio.app_request(bundle, bad)
    too_wide = studio.app_request(bundle, Settings(seconds=2, windows=(bundle.config.window_cap + 1,) * 4), False)
    with pytest.raises(ComagenError, match="between 1 and"):  # checked once, by the model
        list(studio.stream(bundle, Prompt.empty(), too_wide, "x", live="text"))
    composer = bundle.composers.names[1]
    assert studio.app_request(bundle, Settings(composer=composer)).composer == 1


def test_keep_seconds_must_be_a_real_length(bundle: Bundle, gallery: dict) -> None:
    for bad in (float("nan"), float("inf"), 0, -3):
        with pytest.raises(ComagenError, match="keep_seconds"):
            studio.resolve_prompt(bundle, None, gallery, ELISE, bad)


# ------------------------------------------------------------------------------ temp files


def test_cleaner_removes_files_once_they_reach_the_age_and_says_when_next(tmp_path: Path) -> None:
    old = tmp_path / "out" / "take-1" / "a.mid"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x")
    time.sleep(1.0)  # the cleaner counts from ctime, which a test cannot backdate
    fresh = tmp_path / "out" / "gradio" / "abc" / "b.png"
    fresh.parent.mkdir(parents=True)
    fresh.write_bytes(b"x")
    born = {p: p.stat().st_ctime for p in (old, fresh)}
    age = time.time() - (born[old] + born[fresh]) / 2  # old is ~0.5 s past it, fresh ~0.5 s short
    next_expiry = studio.clean_out_dir(age, [tmp_path / "out"])
    assert not old.exists() and fresh.exists()
    assert next_expiry == pytest.approx(born[fresh] + age)
    assert studio.clean_out_dir(age, [tmp_path / "nowhere"]) is None


def test_an_idle_server_still_loses_its_files_on_time(tmp_path: Path) -> None:
    """new_out_dir cleans only when a result is made; the cleaner thread does it on its own."""
    root = tmp_path / "out"
    stop = threading.Event()
    cleaner = studio.start_cleaner(2.0, [root], stop)
    try:
        made = time.time()
        file = root / "take-x" / "x.mid"
        file.parent.mkdir(parents=True)
        file.write_bytes(b"x")
        deadline = made + 30  # generous: the cleaner wakes at the expiry itself
        while file.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert not file.exists() and time.time() - made >= 1.9  # file times run a tick behind
    finally:
        stop.set()
        cleaner.join(10)
    assert not cleaner.is_alive()


@pytest.mark.parametrize("value, expected", [(None, studio.OUT_MAX_AGE), ("", studio.OUT_MAX_AGE), ("90", 90.0),
                                             ("2.5", 2.5)])
def test_out_max_age_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str | None,
                                                expected: float) -> None:
    if value is None:
        monkeypatch.delenv("COMAGEN_OUT_MAX_AGE", raising=False)
    else:
        monkeypatch.setenv("COMAGEN_OUT_MAX_AGE", value)
    assert studio.out_max_age_from_env() == expected


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "-5", "0.5"])
def test_a_bad_out_max_age_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("COMAGEN_OUT_MAX_AGE", value)
    with pytest.raises(ComagenError, match="COMAGEN_OUT_MAX_AGE") as info:
        studio.out_max_age_from_env()
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ streaming and results


def test_stream_updates_text_twice_a_second_and_ends_with_every_result(bundle: Bundle, gallery: dict) -> None:
    prompt, name = studio.resolve_prompt(bundle, None, gallery, ELISE, 4)
    req = studio.app_request(bundle, Settings(seconds=4, variations=2, seed=1), False)
    stamps, frames = [], []
    for frame in studio.stream(bundle, prompt, req, name):
        stamps.append(time.perf_counter())
        frames.append(frame)
    live = [f for f in frames if f.take is None]
    gaps = np.diff(stamps[:len(live)])
    assert len(gaps) == 0 or np.median(gaps) < 0.5
    assert any(f.rolls for f in live) or len(live) < 3
    final = frames[-1]
    assert final.take is not None and len(final.results) == 2 and final.first_token_s is not None
    for r, ids in zip(final.results, final.take.rows, strict=True):
        assert ids and r.roll.ndim == 3 and r.attention is not None
        score = symusic.Score.from_midi(r.midi.read_bytes())
        assert score.note_num() > 0
        with wave.open(str(r.wav)) as w:
            assert w.getnchannels() == 2 and w.getnframes() > w.getframerate() * 4
        assert r.player.suffix == ".ogg" and 0 < r.player.stat().st_size < r.wav.stat().st_size / 4
    assert "tokens/s" in final.stats and "real-time factor" in final.stats and "seed 1" in final.stats


def test_live_view_off_sends_nothing_until_the_results(bundle: Bundle, gallery: dict,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    prompt, name = studio.resolve_prompt(bundle, None, gallery, ELISE, 4)
    req = studio.app_request(bundle, Settings(seconds=2), False)
    frames = list(studio.stream(bundle, prompt, req, name, live="off"))
    assert [f.status for f in frames] == ["Rendering audio and figures ...", "Done."]
    assert frames[-1].take.rows[0]
    monkeypatch.setenv("COMAGEN_LIVE_VIEW", " Text ")
    assert studio.live_view_from_env() == "text"
    monkeypatch.setenv("COMAGEN_LIVE_VIEW", "sometimes")
    with pytest.raises(ComagenError, match="COMAGEN_LIVE_VIEW must be one of on, text, off"):
        studio.live_view_from_env()


def test_stop_keeps_what_was_made_and_continue_extends_it(bundle: Bundle, gallery: dict) -> None:
    prompt, name = studio.resolve_prompt(bundle, None, gallery, ELISE, 4)
    req = studio.app_request(bundle, Settings(seconds=60), False)
    final, registry = stopped_after_two_frames(studio, bundle, prompt, req, name)
    assert final.status.startswith("Stopped") and final.take.rows[0] and "stopped early" in final.stats
    assert not registry.stop("me")  # the job left the registry

    history = [final.take]
    again, _ = studio.continue_prompt(bundle, history, 0)
    assert again.ids[:len(prompt.ids)] == prompt.ids and len(again.ids) > len(prompt.ids)
    assert again.seconds >= prompt.seconds and again.seconds % 2 == 0  # on a bar line
    with pytest.raises(ComagenError, match="generate first"):
        studio.continue_prompt(bundle, [], 0)


def test_a_client_that_leaves_stops_its_job(bundle: Bundle, gallery: dict) -> None:
    """gradio closes the stream of a client that disconnected; sampling must stop with it, not run
    on to the requested length while other users wait."""
    prompt, name = studio.resolve_prompt(bundle, None, gallery, ELISE, 4)
    registry = studio.Registry()
    req = studio.app_request(bundle, Settings(seconds=studio.MAX_SECONDS), False)
    frames = studio.stream(bundle, prompt, req, name, registry=registry, key="gone", live="text")
    next(frames)
    job = registry.get("gone")
    frames.close()
    assert job is not None and job.wait(60) and job.session.stopped
    assert job.session.stats["music_seconds"] < studio.MAX_SECONDS and registry.get("gone") is None


def test_missing_fluidsynth_gives_a_note_and_everything_else(monkeypatch: pytest.MonkeyPatch,
                                                             bundle: Bundle, gallery: dict) -> None:
    def no_synth(score: symusic.Score, paths: list[Path]) -> None:
        raise AudioUnavailableError("FluidSynth is not installed (apt install libfluidsynth3)")

    monkeypatch.setattr(studio.present, "render_files", no_synth)
    prompt, name = studio.resolve_prompt(bundle, None, gallery, ELISE, 4)
    take = studio.Take(prompt, [[]], 0, 0, None, name)
    (result,) = studio.render_take(bundle, take)
    assert result.wav is None and result.player is None and "FluidSynth is not installed" in result.note
    assert result.midi.is_file() and result.roll.size


def test_live_roll_colours_prompt_and_continuation(bundle: Bundle, gallery: dict) -> None:
    prompt, _ = studio.resolve_prompt(bundle, None, gallery, ELISE, 4)
    score = bundle.tokenizer.decode_ids(prompt.ids)
    blue = studio.live_roll(score, 100.0).astype(int)  # everything before the split: prompt colour
    orange = studio.live_roll(score, 0.0).astype(int)
    assert blue.shape[1] == studio.LIVE_WIDTH
    assert (blue[..., 2] > blue[..., 0]).any() and not (blue[..., 0] > blue[..., 2] + 60).any()
    assert (orange[..., 0] > orange[..., 2] + 60).any()


# ------------------------------------------------------------------------------ the endpoint


def test_generate_endpoint_from_a_script(shipped_app: str, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(shipped_app, verbose=False)
    out = client.predict(prompt=ELISE, upload=None, keep_seconds=4, seconds=4, seed=5, random_seed=False,
                         api_name="/generate")
    status, stats, seed = out[:3]
    n = studio.MAX_VARIATIONS
    roll, wav, midi = out[3 + n], out[3 + 2 * n], out[3 + 3 * n]
    assert status == "Done." and seed == 5 and "tokens/s" in stats
    assert symusic.Score.from_midi(Path(midi).read_bytes()).note_num() > 0
    assert Path(wav).stat().st_size > 44 and Path(roll).is_file()

    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06broken")
    with pytest.raises(Exception, match="bad.mid: the MIDI data is corrupt"):
        client.predict(prompt=ELISE, upload=handle_file(str(bad)), seconds=4, api_name="/generate")
    again = client.predict(prompt=studio.NOTHING, upload=None, seconds=2, api_name="/generate")
    assert again[0] == "Done."


def test_a_setting_added_to_settings_reaches_the_cli_and_the_page(bundle: Bundle,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`Settings` is the one definition: a new field becomes a CLI option and a page control, and comes
    back from the page's values, with no edit to the CLI or the app."""
    import argparse
    from dataclasses import make_dataclass

    import gradio as gr

    from comagen.generation import settings as settings_module
    from studio import controls

    extended = make_dataclass("Settings", [("swing", float, settings_module.setting(
        0.25, "swing (0 = straight)", low=0, high=1, step=0.05))], bases=(Settings,), frozen=True)
    monkeypatch.setattr(settings_module, "Settings", extended)
    monkeypatch.setattr(controls, "Settings", extended)
    parser = argparse.ArgumentParser()
    settings_module.add_cli_options(parser)
    assert parser.parse_args(["--swing", "0.5"]).swing == 0.5
    with gr.Blocks():
        page = controls.settings_controls(bundle, "main", studio.LIMITS)
    assert (page["swing"].label, page["swing"].value, page["swing"].maximum) == ("swing (0 = straight)", 0.25, 1)
    chosen, _ = controls.settings_from_values({name: c.value for name, c in page.items()} | {"swing": 0.75})
    assert chosen.swing == 0.75
