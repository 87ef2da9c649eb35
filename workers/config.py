"""The one settings object: environment (prefix VIGIL_) over an optional YAML/TOML file over defaults.

The file is named by VIGIL_CONFIG (or `vigil --config FILE`); nested fields use `__` in the
environment, e.g. VIGIL_ALERTS__START_FRAMES=5.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from workers.bus.schemas import CameraConfig, CameraRetention

if TYPE_CHECKING:
    from models.detector.streams import DetectorConfig
from models.detector.base import missing_stream
from models.scoring.hysteresis import HysteresisConfig
from models.scoring.sampling import frames_in
from models.selftrain.config import MiningParams, OnlineConfig, SelfTrainConfig

CONFIG_ENV = "VIGIL_CONFIG"


class AnalysisSettings(BaseModel):
    """How frames are sampled and stored for analysis (per-camera values override these)."""

    fps: float = Field(10.0, gt=0, le=60, description="Frames per second sent to the detector.")
    width: int = Field(360, ge=32, le=1920, description="Analysis frame width (grayscale).")
    height: int = Field(240, ge=32, le=1080, description="Analysis frame height (grayscale).")
    display_interval_s: float = Field(1.0, gt=0, description="Seconds between stored display JPEGs.")
    display_width: int = Field(480, ge=64, le=1920, description="Width of stored display JPEGs.")
    buffer_seconds: float = Field(300.0, gt=0, description="Seconds of analysis frames kept per camera.")

    def buffer_frames(self, fps: float, seconds: float | None = None) -> int:
        """Entries a camera's frame (and score) stream is capped at (`seconds`: its own span)."""
        return max(1, round(fps * (seconds or self.buffer_seconds)))

    def for_camera(self, camera: CameraConfig) -> CameraAnalysis:
        """A camera's analysis settings: its own where it sets them, these elsewhere."""
        fps = camera.fps or self.fps
        return CameraAnalysis(
            fps=fps,
            width=camera.width or self.width,
            height=camera.height or self.height,
            buffer_frames=self.buffer_frames(fps, camera.retention and camera.retention.frames_s),
        )


@dataclass(frozen=True)
class CameraAnalysis:
    """One camera's resolved analysis settings."""

    fps: float
    width: int
    height: int
    buffer_frames: int  # entries its frame and score streams are capped at


class DetectorSettings(BaseModel):
    """The detector `vigil train`, `vigil eval` and a cold start build (a trained model file says its own)."""

    streams: list[Literal["motion", "appearance", "place", "prediction"]] = Field(
        default_factory=lambda: ["motion", "appearance", "place"],
        min_length=1,
        description="Evidence streams: optical-flow speed, pretrained features against a memory of normal "
        "cells, motion where normal footage rarely moves (needs motion), U-Net frame prediction.",
    )
    bank_size: int = Field(1024, ge=16, le=65536, description="Normal cells the appearance stream remembers.")

    @model_validator(mode="after")
    def _streams_run_together(self) -> DetectorSettings:
        if problem := missing_stream(self.streams):
            raise ValueError(problem)
        return self

    def config(self, height: int, width: int, streams: list[str] | None = None) -> DetectorConfig:
        from models.detector.streams import DetectorConfig  # torch only where a detector is built

        return replace(
            DetectorConfig.for_size(height, width, tuple(streams or self.streams)), bank_size=self.bank_size
        )


class InferenceSettings(BaseModel):
    model_path: Path | None = Field(
        None,
        description="Detector weights (.onnx or .pt). Unset: the current published model, else the motion baseline.",
    )
    batch_max: int = Field(32, ge=1, le=1024, description="Most frames scored in one batch across cameras.")
    batch_wait_ms: int = Field(20, ge=0, le=2000, description="Longest wait to fill a batch.")
    threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads (0: runtime default).")
    device: str = Field("auto", pattern="^(auto|cpu|cuda)$")
    lease_ttl_ms: int = Field(
        3000, ge=500, description="A camera owned by a silent worker is taken over after this."
    )


class AlertSettings(BaseModel):
    threshold: float = Field(
        0.35,
        gt=0,
        lt=1,
        description="Normalized score of a learned model above which a frame counts as anomalous (chosen on "
        "UCSD Ped1 and Ped2 together: see the README's Alert quality).",
    )
    baseline_threshold: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="The same while a site has no learned model and the motion baseline scores (nothing "
        "learned: its scores are normalized by the stream's own statistics, and page more at a lower one).",
    )
    start_s: float = Field(
        0.3,
        gt=0,
        description="Seconds of consecutive anomalous frames that open an alert (3 frames at 10 frames/s; "
        "counted in frames at each camera's rate, at least 1).",
    )
    end_s: float = Field(
        1.0, gt=0, description="Seconds of consecutive normal frames that close an alert (10 at 10 frames/s)."
    )
    update_interval_s: float = Field(
        2.0, ge=0, description="Least seconds between update events of an open alert."
    )
    cooldown_s: float = Field(
        10.0,
        ge=0,
        description="A new alert within this many seconds of the last one's end on the same camera joins it "
        "(an update, no second page). 0: only alerts that overlap or touch are merged.",
    )
    cusum_reference: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Page's CUSUM also opens an alert on weak but sustained evidence: the sum of each frame's "
        "score minus this (never below 0) reaching cusum_limit (see the README's Alert quality).",
    )
    cusum_limit: float = Field(
        0.0, ge=0, description="The CUSUM's decision interval; 0: the threshold rule alone opens alerts."
    )
    label_ceiling: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="Alerts marked normal without a category raise their camera's threshold to just above "
        "their peak, up to this (models/scoring/label_threshold.py); 0: labels never move a threshold.",
    )

    @model_validator(mode="before")
    @classmethod
    def _frames_became_seconds(cls, data: Any) -> Any:
        if isinstance(data, dict) and (old := {"start_frames", "end_frames"} & set(data)):
            raise ValueError(
                f"{' and '.join(sorted(old))}: alerts now open and close after a time, not a count of frames: "
                "use VIGIL_ALERTS__START_S (3 frames at 10 frames/s is 0.3) and VIGIL_ALERTS__END_S (10: 1.0)"
            )
        return data


class RetrainSettings(BaseModel):
    """Self-training: mining confident frames from the buffered stream, fine-tuning, validated hot swap.

    Defaults are the model configs' own (models/selftrain/config.py): written once, there."""

    enabled: bool = Field(True, description="Run self-training cycles (and the cold start of a first model).")
    interval_s: float = Field(30.0, gt=0, description="Seconds between checks for enough new frames.")
    cycle_frames: int = Field(
        OnlineConfig.cycle_frames, ge=10, description="New scored frames (all cameras) that start a cycle."
    )
    window_frames: int = Field(
        OnlineConfig.window_frames,
        ge=50,
        description="Newest frames a cycle mines, shared evenly among the cameras.",
    )
    policy: Literal["localized", "paper"] = Field(
        SelfTrainConfig.policy,
        description="Normal-frame rule: the paper's FS hinge, or the same hinge over the localized score.",
    )
    eta_s: float = Field(
        MiningParams.eta_s, gt=0, lt=1, description="Score at or above which a frame is mined as abnormal."
    )
    eta_p: float = Field(
        MiningParams.eta_p, gt=0, description="Coarse pixel-error threshold of the paper's rule."
    )
    alpha: float = Field(MiningParams.alpha, gt=0, lt=4, description="Hinge sensitivity of the paper's rule.")
    localized_alpha: float = Field(
        SelfTrainConfig.localized_alpha, gt=0, lt=4, description="Hinge sensitivity of the localized rule."
    )
    min_run: int = Field(
        MiningParams.min_run, ge=1, description="FNmin: fewest consecutive frames in a mined run."
    )
    memory_frames: int = Field(
        SelfTrainConfig.memory_frames,
        ge=1,
        description="Most mined frames whose cells a cycle offers the appearance memory.",
    )
    memory_growth: int = Field(
        SelfTrainConfig.memory_growth,
        ge=0,
        description="Most cells a cycle adds to the appearance memory (0: its size is fixed).",
    )
    memory_max_cells: int = Field(
        SelfTrainConfig.memory_max_cells,
        ge=16,
        description="Largest appearance memory a cycle grows (each cell costs inference time).",
    )
    refit_normal_z: float = Field(
        SelfTrainConfig.refit_normal_z,
        description="Mean z of the held-out normal frames (the model's own, without the level a swap holds) "
        "above which a cycle also fits a fresh model.",
    )
    refit_min_frames: int = Field(
        SelfTrainConfig.refit_min_frames,
        ge=0,
        description="Fewest mined normal frames a fresh model is fitted to (0: never).",
    )
    eta_a: float = Field(
        MiningParams.eta_a, gt=0, description="Normalized pixel error at or above which a pixel is masked."
    )
    steps: int = Field(
        SelfTrainConfig.steps, ge=1, description="Prediction stream: fine-tuning steps per cycle."
    )
    max_seconds: float = Field(
        SelfTrainConfig.max_seconds, gt=0, description="Prediction stream: longest fine-tuning per cycle."
    )
    replay_frames: int = Field(
        OnlineConfig.replay_frames, ge=0, description="Earlier mined normal frames replayed in fine-tuning."
    )
    prior_frames: int = Field(
        SelfTrainConfig.prior_frames,
        ge=0,
        description="Frames the current normal levels and statistics count as in a cycle.",
    )
    coldstart_frames: int = Field(
        OnlineConfig.coldstart_frames,
        ge=100,
        description="Buffered frames needed to train a first model when none is published.",
    )
    coldstart_min_frames: int = Field(
        OnlineConfig.coldstart_min_frames,
        ge=20,
        description="Confidently normal frames among them needed to fit the first model.",
    )
    adaptive_threshold: bool = Field(
        OnlineConfig.adaptive_threshold,
        description="Alert/mining threshold from the models' consensus once it settles.",
    )
    rebase_z: float = Field(
        OnlineConfig.rebase_z,
        ge=0,
        description="A model that finds the quietest quarter of a window above this z, or whose place map "
        "was silenced (its view moved), does not know the site and is replaced by a fresh cold start "
        "(0: never).",
    )
    rebase_frames: int = Field(
        OnlineConfig.rebase_frames,
        ge=100,
        description="The fewest frames in a cycle's window that judge whether the model knows the site (rebase_z).",
    )
    moved_place_z: float = Field(
        OnlineConfig.moved_place_z,
        ge=0,
        description="A place map whose evidence on a window's quietest quarter, or on one camera's own frames' "
        "(at least 200 of them), lies this far over its gate no longer fits the view (the camera moved): the "
        "cycle silences it first (0: never).",
    )
    view_check_frames: int = Field(
        OnlineConfig.view_check_frames,
        ge=0,
        description="Between cycles, every this many new frames, each camera's newest as many are checked "
        "for a view that moved (moved_place_z); a large site's cameras in turns, within window_frames (0: at "
        "cycles only).",
    )
    register_moved_view: bool = Field(
        OnlineConfig.register_moved_view,
        description="A moved view's maps (normal speeds, place map) carried to it where an affine map registers "
        "it to the model's view; off, or where none does, its place map is silenced until a fit learns it.",
    )
    ordinal_head: Literal["labels", "always", "never"] = Field(
        SelfTrainConfig.ordinal_head,
        description="The ordinal scoring head: added once operators label an anomaly, always, or never.",
    )
    threads: int = Field(1, ge=0, description="PyTorch threads of the retraining worker (0: all cores).")
    nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Scheduling niceness of the retraining worker: inference keeps the CPU it needs, "
        "cycles take what is left.",
    )


class WebhookSettings(BaseModel):
    urls: list[str] = Field(default_factory=list, description="POST every alert event as JSON to these URLs.")
    timeout_s: float = Field(5.0, gt=0, description="Longest wait for a webhook answer.")
    max_attempts: int = Field(
        8, ge=1, description="Tries before an event is given up for a URL (and logged)."
    )
    retry_max_s: float = Field(60.0, gt=0, description="Longest backoff between tries.")


class MqttSettings(BaseModel):
    url: str | None = Field(
        None,
        description="Broker: mqtt://[user:password@]host[:1883] or mqtts:// (TLS, port 8883); user and "
        "password may be ${NAME} references (an environment variable NAME, else /run/secrets/NAME). "
        "Unset: no MQTT.",
    )
    topic_prefix: str = Field("vigil", pattern=r"^[^#+]+$", description="Topics start with this.")
    discovery_prefix: str = Field(
        "homeassistant", pattern=r"^[^#+]+$", description="Home Assistant MQTT discovery prefix."
    )
    discovery: bool = Field(True, description="Publish Home Assistant discovery configs per camera.")
    tls_ca: Path | None = Field(None, description="CA file for mqtts:// (default: the system's CAs).")
    client_id: str = Field("vigil", description="MQTT client id (one Vigil per broker per id).")
    timeout_s: float = Field(5.0, gt=0, description="Longest wait for the broker to acknowledge a message.")
    max_attempts: int = Field(8, ge=1, description="Tries before an event is given up (and logged).")
    retry_max_s: float = Field(60.0, gt=0, description="Longest backoff between tries.")
    score_interval_s: float = Field(
        1.0, gt=0, description="How often each camera's latest score is published."
    )


@dataclass(frozen=True)
class MediaSpans:
    """One camera's resolved retention spans, in seconds (its analysis frames: CameraAnalysis)."""

    display_s: float
    error_maps_s: float
    heat_s: float


class RetentionSettings(BaseModel):
    """How long the site's data is kept. Media spans are the defaults of every camera (a camera's
    `retention` sets its own); analysis frames are kept for `analysis.buffer_seconds`. The retention sweep
    of the ingest worker removes what is past its span; keys with a TTL expire by themselves."""

    display_s: float = Field(
        3600.0, ge=60, description="Seconds display JPEGs are kept (alert snapshots, heat map backgrounds)."
    )
    error_maps_s: float = Field(3600.0, ge=10, description="Seconds pixel error maps are kept.")
    heat_s: float = Field(86400.0, ge=60, description="Seconds per-minute anomaly heat maps are kept.")
    alerts_s: float = Field(
        30 * 86400.0,
        ge=3600,
        description="Seconds closed alerts and alert events are kept after their end (open alerts and "
        "alerts an operator labelled stay).",
    )
    labels_s: float = Field(
        0.0, ge=0, description="Seconds operator labels are kept (0: forever; they are training data)."
    )
    sweep_interval_s: float = Field(60.0, gt=0, description="Seconds between retention sweeps.")

    def for_camera(self, camera: CameraConfig) -> MediaSpans:
        """A camera's media spans: its own where it sets them, these elsewhere."""
        own = camera.retention or CameraRetention()
        return MediaSpans(
            display_s=own.display_s or self.display_s,
            error_maps_s=own.error_maps_s or self.error_maps_s,
            heat_s=own.heat_s or self.heat_s,
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VIGIL_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    redis_url: str | None = Field(
        None,
        description="Redis server (redis://...), or a Redis Cluster (redis+cluster://host:port,host:port); "
        "unset: an embedded Redis in data_dir.",
    )
    data_dir: Path = Field(Path("data"), description="Embedded Redis files, models, logs.")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=1, le=65535)
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    operator_token: SecretStr | None = Field(None, description="Required bearer token for write endpoints.")
    read_token: SecretStr | None = Field(
        None,
        description="When set, every endpoint but /healthz and /readyz needs it (or the operator token): "
        "'Authorization: Bearer <token>' or ?token=<token> (the page, the alert WebSocket).",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API from other sites (CORS); empty: none.",
    )
    reconnect_max_s: float = Field(
        3.0, gt=0, description="Longest backoff between source reconnects (a source back is seen within it)."
    )
    heartbeat_s: float = Field(1.0, gt=0, description="Worker heartbeat period.")
    analysis: AnalysisSettings = AnalysisSettings()
    detector: DetectorSettings = DetectorSettings()
    inference: InferenceSettings = InferenceSettings()
    alerts: AlertSettings = AlertSettings()
    webhooks: WebhookSettings = WebhookSettings()
    mqtt: MqttSettings = MqttSettings()
    retrain: RetrainSettings = RetrainSettings()
    retention: RetentionSettings = RetentionSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise ValueError(f"{CONFIG_ENV}={config_file}: no such file")
            if path.suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def hysteresis_config(
    alerts: AlertSettings,
    threshold: float | None = None,
    learned: bool = True,
    adaptive: float | None = None,
    labelled: float | None = None,
    *,
    fps: float,
) -> HysteresisConfig:
    """The alert hysteresis of the settings for a camera analysed at `fps` frames a second (its opening and
    closing times counted in its frames), at a threshold: a camera's own, else the setting's for a learned
    model or for the motion baseline. A learned model's adaptive threshold (the consensus of self-trained
    models) raises a learned model's, never lowers it; the threshold the camera's labelled alerts ask for
    (`labelled`: models/scoring/label_threshold.py) raises any. The inference worker and `vigil eval` use
    the same."""
    if threshold is None:
        threshold = alerts.threshold if learned else alerts.baseline_threshold
        if learned and adaptive is not None:
            threshold = max(threshold, adaptive)
    if labelled is not None:
        threshold = max(threshold, labelled)
    return HysteresisConfig(
        threshold=threshold,
        start_frames=frames_in(alerts.start_s, fps),
        end_frames=frames_in(alerts.end_s, fps),
        update_interval_s=alerts.update_interval_s,
        cooldown_s=alerts.cooldown_s,
        cusum_reference=alerts.cusum_reference,
        cusum_limit=alerts.cusum_limit,
    )


def _same_named(settings: BaseModel, config: type) -> dict[str, Any]:
    """The settings that a field of the dataclass `config` of the same name takes (the settings mirror them)."""
    names = {field.name for field in fields(config)}
    return {name: getattr(settings, name) for name in type(settings).model_fields if name in names}


def online_config(all_settings: Settings, seed: int = 0) -> OnlineConfig:
    """The self-training parameters of the settings (the worker and `vigil eval` use the same)."""
    settings = all_settings.retrain
    analysis = all_settings.analysis
    mining = MiningParams(**_same_named(settings, MiningParams))
    selftrain = SelfTrainConfig(mining=mining, seed=seed, **_same_named(settings, SelfTrainConfig))
    return OnlineConfig(
        selftrain=selftrain,
        **_same_named(settings, OnlineConfig),
        detector=all_settings.detector.config(analysis.height, analysis.width),
    )
