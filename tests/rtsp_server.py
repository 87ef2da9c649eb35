"""A loopback RTSP server for tests, run with the system Python (GStreamer through `gi`):

    /usr/bin/python3 tests/rtsp_server.py --port 8554 [--mount /cam] [--file clip.mp4 ... [--once]] [--address 0.0.0.0]

Without --file it serves an endless live test pattern (H.264 from openh264enc, a keyframe every second);
with --file it streams an H.264 MP4 (or MPEG-TS: .ts) once to each client; with several, each client gets
the next one in turn. With --once each file is served to one client only and then requests get 404 Not
Found (a replay that must not start again when its camera reconnects at the end). It listens on loopback
unless --address names another interface (containers reach the host through their network's gateway).
Prints "ready" when it listens; SIGTERM/SIGINT stop it.
Needs: gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
python3-gi (Debian).
"""

from __future__ import annotations

import argparse
import signal

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402  (after the version pins)

LIVE_PIPELINE = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate={fps}/1 "
    "! videoconvert ! openh264enc gop-size={fps} ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96"
)
FILE_PIPELINE = (
    'filesrc location="{file}" ! {demuxer} ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96'
)


class Playlist(GstRtspServer.RTSPMediaFactory):
    """Files in turn: each new client's media plays the next one (after the last, the first again)."""

    def __init__(self, files: list[str]) -> None:
        super().__init__()
        self.files = files
        self.served = 0

    def do_create_element(self, url: object) -> Gst.Element:
        file = self.files[self.served % len(self.files)]
        self.served += 1
        demuxer = "tsdemux" if file.endswith(".ts") else "qtdemux"
        return Gst.parse_launch(f"( {FILE_PIPELINE.format(file=file, demuxer=demuxer)} )")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1", help="interface to listen on (default loopback)")
    parser.add_argument("--mount", default="/cam")
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        help="an H.264 MP4 or MPEG-TS (.ts) to stream (default: a live test pattern); repeated: each client "
        "gets the next",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="each file to one client only: once the last one is done with, requests get 404 Not Found",
    )
    parser.add_argument("--width", type=int, default=360)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    if args.file:
        factory: GstRtspServer.RTSPMediaFactory = Playlist(args.file)
    else:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f"( {LIVE_PIPELINE.format(**vars(args))} )")
    mounts = server.get_mount_points()
    mounts.add_factory(args.mount, factory)
    if args.once:  # once the last file's media is done with, the mount is gone

        def configured(playlist: Playlist, media: GstRtspServer.RTSPMedia) -> None:
            if playlist.served == len(playlist.files):
                media.connect("unprepared", lambda *_: mounts.remove_factory(args.mount))

        factory.connect("media-configure", configured)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on {args.address}:{args.port}")
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
