"""The Play tab's duet over a WebSocket (`/comagen/duet`): the page sends keys and pedal with its own
clock's times, the server's `DuetLoop` answers with notes as they are sampled. A socket, not
gradio's queue: a takeover must reach the page in milliseconds, and keys flow both ways.

Messages in: {"type": "start", "checkpoint", "pause", "answer_bars"}, then "key" (t, pitch, velocity;
0 releases), "pedal" (t, down), "take_over" (t), "finish" (the take is kept, its id sent back).
Out: the loop's events (turn, note, cut, answered, message, error), "ready", "take".
One duet at a time per server by default (COMAGEN_DUETS): a second tab is told so and the first
plays on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import symusic
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from comagen.errors import ComagenError
from comagen.generation.duet import Duet
from comagen.generation.settings import bundle_settings
from comagen.generation.turns import DuetLoop, Turns
from studio.catalog import Checkpoints, needs_tokens

log = logging.getLogger("comagen.studio")
PATH = "/comagen/duet"
PLAY_SCRIPT = '<script src="/comagen/web/static/play.js"></script>'  # the Play tab's page side
KEPT_TAKES = 16  # finished duets waiting to be shown (the oldest goes first)
MAX_MESSAGES_PER_S = 2000  # past this the socket is closed: no keyboard sends that much


@dataclass(frozen=True)
class DuetTake:
    """A finished duet: the checkpoint it was played with and both parts as heard."""

    checkpoint: str
    score: symusic.Score


class DuetTakes:
    """Finished duets by id, until the page asks to show one (a few are kept, thread-safe)."""

    def __init__(self) -> None:
        self._takes: OrderedDict[str, DuetTake] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, take: DuetTake) -> str:
        key = uuid.uuid4().hex[:12]
        with self._lock:
            self._takes[key] = take
            while len(self._takes) > KEPT_TAKES:
                self._takes.popitem(last=False)
        return key

    def get(self, key: str) -> DuetTake:
        with self._lock:
            take = self._takes.get(str(key))
        if take is None:
            raise ComagenError("that duet is no longer on the server: play it again")
        return take


def duet_routes(checkpoints: Checkpoints, takes: DuetTakes) -> list[BaseRoute]:
    slots = threading.BoundedSemaphore(int(os.environ.get("COMAGEN_DUETS", "1")))

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        if not slots.acquire(blocking=False):
            await ws.send_json({"type": "error", "text": "another duet is playing on this server (one at a time): "
                                                         "try again when it ends"})
            await ws.close()
            return
        try:
            await _serve(ws, checkpoints, takes)
        except WebSocketDisconnect:
            pass
        finally:
            slots.release()

    return [WebSocketRoute(PATH, endpoint)]


async def _serve(ws: WebSocket, checkpoints: Checkpoints, takes: DuetTakes) -> None:
    """One page's duet: start it, move its messages, keep its take on finish."""
    loop, out = asyncio.get_running_loop(), asyncio.Queue()
    try:
        start = await ws.receive_json()
        name = str(start.get("checkpoint"))
        turns = Turns(float(start.get("pause", 1.0)), float(start.get("answer_bars", 4.0)))
        duet = await asyncio.to_thread(_duet, checkpoints, name)
    except (ComagenError, ValueError, TypeError) as exc:
        await ws.send_json({"type": "error", "text": str(exc)})
        return
    engine = DuetLoop(duet, turns, lambda e: loop.call_soon_threadsafe(out.put_nowait, e))
    sender = asyncio.create_task(_send(ws, out))
    await ws.send_json({"type": "ready", "runtime": duet.runtime.name, "checkpoint": name})
    try:
        await _receive(ws, engine, duet, takes, name)
    finally:
        await asyncio.to_thread(engine.close)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender


def _duet(checkpoints: Checkpoints, name: str) -> Duet:
    bundle = checkpoints.get(name)
    needs_tokens(bundle, "The duet")
    return Duet(bundle, bundle_settings(bundle))


async def _send(ws: WebSocket, out: asyncio.Queue) -> None:
    while True:
        await ws.send_json(await out.get())


async def _receive(ws: WebSocket, engine: DuetLoop, duet: Duet, takes: DuetTakes, name: str) -> None:
    """Keys in until the page finishes or goes; a flood beyond any keyboard closes the socket."""
    count, since = 0, asyncio.get_running_loop().time()
    while True:
        msg = await ws.receive_json()
        count += 1
        if count > MAX_MESSAGES_PER_S:
            now = asyncio.get_running_loop().time()
            if now - since < 1.0:
                await ws.send_json({"type": "error", "text": "too many messages a second: the duet ends here"})
                return
            count, since = 0, now
        try:
            kind = _pass_on(msg, engine)
        except (KeyError, ValueError, TypeError, AttributeError):
            await ws.send_json({"type": "message", "text": f"ignored a malformed message: {str(msg)[:80]}"})
            continue
        if kind == "finish":
            await asyncio.to_thread(engine.close)
            key = takes.keep(DuetTake(name, duet.take()))
            await ws.send_json({"type": "take", "id": key, "notes": duet.take().note_num()})
            return


def _pass_on(msg: dict, engine: DuetLoop) -> str:
    """Hand a key, pedal or takeover to the loop; returns the message's type."""
    kind, t = msg["type"], float(msg.get("t", engine.now()))
    if kind == "key":
        engine.key(t, int(msg["pitch"]), int(msg["velocity"]))
    elif kind == "pedal":
        engine.pedal(t, bool(msg["down"]))
    elif kind == "take_over":
        engine.take_over(t)
    return kind
