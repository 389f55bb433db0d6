"""The monitoring settings (Prometheus on the group monitoring; exporters on every host). Each setting is declared once, here (deploys/core/tunables.py)."""

from __future__ import annotations

from deploys.core.tunables import IMAGE_REF, Setting, _float, _int, _ip, _text


# One line per setting, like the README's table (the formatter leaves it alone).
# fmt: off
class MonitoringSettings:
    # -- monitoring (Prometheus on the inventory group monitoring; exporters on every host) --
    monitoring_listen_address = Setting("127.0.0.1", "Address Prometheus's web UI and API listen on (monitoring hosts): a private address for Grafana, never 0.0.0.0 by default.", "str", _ip)
    monitoring_port = Setting(9090, "Port of Prometheus's web UI and API.", "int", _int(1, 65535))
    monitoring_scrape_interval_s = Setting(15, "Seconds between two scrapes of each target; the alert rules are evaluated as often.", "int", _int(1, 3600))
    monitoring_rate_window_s = Setting(300, "Window of the rates in the alert rules (at least 4 scrape intervals).", "int", _int(10, 86_400))
    monitoring_retention = Setting("15d", "How long Prometheus keeps samples (--storage.tsdb.retention.time).", "str", _text(r"([0-9]+(ms|s|m|h|d|w|y))+", "a Prometheus duration such as 15d or 12h"))
    monitoring_exporter_address = Setting("127.0.0.1", "Address prometheus-node-exporter (every host) and dcgm-exporter (GPU hosts) listen on: the host's private address for the monitoring host's Prometheus, never 0.0.0.0 by default.", "str", _ip)
    monitoring_node_exporter_port = Setting(9100, "Port of prometheus-node-exporter.", "int", _int(1, 65535))
    monitoring_dcgm_exporter_port = Setting(9400, "Port of dcgm-exporter (GPU hosts).", "int", _int(1, 65535))
    monitoring_dcgm_exporter_image = Setting("nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04", "dcgm-exporter image (GPU hosts), pinned by tag.", "str", _text(IMAGE_REF, "registry/repository:tag"))
    monitoring_model_not_ready_for_s = Setting(60, "Alert TritonModelNotReady: seconds a Triton host's metrics are down or lack the model before it fires.", "int", _int(0, 86_400))
    monitoring_backend_down_for_s = Setting(20, "Alerts FrontDoorBackendDown / FrontDoorNoBackend: seconds a gateway is DOWN at a front door (or none is up) before they fire (planned drains are silenced: it need not outlast a restart).", "int", _int(0, 86_400))
    monitoring_backend_drained_for_s = Setting(60, "Alert FrontDoorBackendDrained: seconds a gateway stays drained at a front door, outside the silence of the drain that made it, before it fires.", "int", _int(0, 86_400))
    monitoring_host_down_for_s = Setting(60, "Alert HostDown: seconds a host's node exporter is unreachable before it fires.", "int", _int(0, 86_400))
    monitoring_error_ratio = Setting(0.05, "Alert GatewayErrorRatioHigh: share of a gateway's /v1/embeddings answers that are 5xx (over the rate window).", "float", _float(0.0, 1.0))
    monitoring_error_ratio_for_s = Setting(300, "Alert GatewayErrorRatioHigh: seconds above the ratio before it fires.", "int", _int(0, 86_400))
    monitoring_p95_latency_s = Setting(1.0, "Alert GatewayLatencyP95High: p95 of a gateway's /v1/embeddings latency (seconds, over the rate window).", "float", _float(0.001, 3600.0))
    monitoring_p95_latency_for_s = Setting(300, "Alert GatewayLatencyP95High: seconds above the latency before it fires.", "int", _int(0, 86_400))
    monitoring_queue_time_ms = Setting(100.0, "Alert TritonQueueTimeHigh: mean time a Triton request waits in the scheduler's queue (milliseconds, over the rate window).", "float", _float(0.001, 3_600_000.0))
    monitoring_queue_time_for_s = Setting(300, "Alert TritonQueueTimeHigh: seconds above the queue time before it fires.", "int", _int(0, 86_400))
    monitoring_gpu_memory_ratio = Setting(0.9, "Alert GpuMemoryNearlyFull: share of a GPU's framebuffer memory in use (dcgm-exporter).", "float", _float(0.0, 1.0))
    monitoring_gpu_memory_for_s = Setting(300, "Alert GpuMemoryNearlyFull: seconds above the share before it fires.", "int", _int(0, 86_400))
    monitoring_disk_free_ratio = Setting(0.1, "Alert DiskNearlyFull: share of a filesystem still free below which it fires (node exporter; tmpfs and overlays left out).", "float", _float(0.0, 1.0))
    monitoring_disk_free_for_s = Setting(300, "Alert DiskNearlyFull: seconds below the share before it fires.", "int", _int(0, 86_400))
    # -- alerting (Alertmanager on the monitoring host; receivers from the vault's `alertmanager`) --
    monitoring_alertmanager_listen_address = Setting("127.0.0.1", "Address Alertmanager's API and UI listen on (monitoring hosts): loopback or a private address, never 0.0.0.0 by default; clustering is off.", "str", _ip)
    monitoring_alertmanager_port = Setting(9093, "Port of Alertmanager's API and UI.", "int", _int(1, 65535))
    monitoring_alert_group_wait_s = Setting(30, "Seconds Alertmanager waits before the first notification of a new group (alert name and host), to batch what fires together.", "int", _int(0, 86_400))
    monitoring_alert_group_interval_s = Setting(300, "Seconds between two notifications of one group when it changes (new alerts, resolutions).", "int", _int(1, 86_400))
    monitoring_alert_repeat_interval_s = Setting(14_400, "Seconds before a notification still firing is sent again.", "int", _int(1, 2_592_000))
    monitoring_silence_margin_s = Setting(300, "Seconds a drain's silence outlasts the drain's own bounds (drain, start, check, roll back, restore): a run killed mid-roll pages once it has passed.", "int", _int(0, 86_400))
    monitoring_maintenance_silence_s = Setting(3600, "Seconds the silence of a host taken out by hand (deploys/drain.py) lasts: a host left out longer pages.", "int", _int(30, 604_800))
    monitoring_roll_failed_alert_s = Setting(3600, "Seconds the RollFailed alert a failed roll sends to Alertmanager stays firing (it pages: severity critical).", "int", _int(60, 604_800))
# fmt: on
