#!/usr/bin/env python3
"""Issue 16's P5: how the agent's figures grow with the cluster.

    scale-report.py OUT.svg RUN.out [RUN.out ...]

Each RUN.out is the output of one `agent-bench SERVICES ENDPOINTS` run
(its `cluster:` line and its `RESULT` lines). Prints a Markdown table of
the figures at each size, with the growth exponent between neighbouring
sizes (log(figure ratio) / log(Services ratio): 1.0 grows linearly, 2.0
quadratically), and writes a log-log plot of the same figures as SVG.
Standard library only.
"""

import math
import re
import sys

# (label, key, scale to the unit shown, unit)
FIGURES = [
    ("agent first sync", "p1_agent_sync_seconds", 1.0, "s"),
    ("  compute", "p1_agent_sync_compute_ms", 1e-3, "s"),
    ("  IPVS apply", "p1_agent_sync_apply_ms", 1e-3, "s"),
    ("  VIPs on kube-ipvs0", "p1_agent_sync_addresses_ms", 1e-3, "s"),
    ("  netfilter", "p1_agent_sync_netfilter_ms", 1e-3, "s"),
    ("agent start to synced", "p1_agent_start_to_synced_seconds", 1.0, "s"),
    ("baseline: ipvsadm -R", "p1_ipvsadm_restore_seconds", 1.0, "s"),
    ("baseline: ip -batch of the VIPs", "p1_ip_batch_addresses_seconds", 1.0, "s"),
    ("floor: raw IPVS burst", "p1_raw_floor_seconds", 1.0, "s"),
    ("one change, event to ACK p50", "p2_event_to_ack_ms_p50", 1.0, "ms"),
    ("one change, event to ACK p99", "p2_event_to_ack_ms_p99", 1.0, "ms"),
    ("baseline: one ipvsadm process", "p2_one_ipvsadm_process_ms_median", 1.0, "ms"),
    ("drift audit (full resync)", "p3_full_resync_seconds_median", 1.0, "s"),
    ("baseline: ipvsadm -Ln", "p3_ipvsadm_list_seconds_median", 1.0, "s"),
    ("baseline: nft list table", "p3_nft_list_seconds", 1.0, "s"),
    ("peak RSS after the first sync", "p4_agent_peak_rss_mib_after_sync", 1.0, "MiB"),
    ("peak RSS after the resyncs", "p4_agent_peak_rss_mib_after_resyncs", 1.0, "MiB"),
]

# The plot's panels: (title, unit, [(label, key, scale)]).
PANELS = [
    (
        "first sync",
        "s",
        [
            ("agent", "p1_agent_sync_seconds", 1.0),
            ("agent: VIPs", "p1_agent_sync_addresses_ms", 1e-3),
            ("agent: compute", "p1_agent_sync_compute_ms", 1e-3),
            ("agent: IPVS apply", "p1_agent_sync_apply_ms", 1e-3),
            ("agent: netfilter", "p1_agent_sync_netfilter_ms", 1e-3),
            ("ipvsadm -R + ip -batch", "baseline_p1", 1.0),
        ],
    ),
    (
        "one endpoint change",
        "ms",
        [
            ("event to ACK p50", "p2_event_to_ack_ms_p50", 1.0),
            ("event to ACK p99", "p2_event_to_ack_ms_p99", 1.0),
            ("one ipvsadm process", "p2_one_ipvsadm_process_ms_median", 1.0),
        ],
    ),
    (
        "memory",
        "MiB",
        [
            ("peak RSS, first sync", "p4_agent_peak_rss_mib_after_sync", 1.0),
            ("peak RSS, resyncs", "p4_agent_peak_rss_mib_after_resyncs", 1.0),
        ],
    ),
]

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f"]


def read_run(path):
    run = {}
    with open(path, errors="replace") as text:
        for line in text:
            found = re.search(r"cluster: (\d+) Services x (\d+) endpoints", line)
            if found:
                run["services"] = int(found.group(1))
                run["endpoints"] = int(found.group(2))
            found = re.search(r"RESULT (\S+) (\S+)", line)
            if found:
                try:
                    run[found.group(1)] = float(found.group(2))
                except ValueError:
                    pass
    if "services" not in run:
        sys.exit(f"{path}: no 'cluster:' line (not an agent-bench output)")
    if "p1_ipvsadm_restore_seconds" in run and "p1_ip_batch_addresses_seconds" in run:
        run["baseline_p1"] = run["p1_ipvsadm_restore_seconds"] + run["p1_ip_batch_addresses_seconds"]
    return run


def table(runs):
    sizes = [f"{r['services']:,} × {r['endpoints']}" for r in runs]
    header = "| figure | " + " | ".join(sizes) + " | growth exponent |"
    lines = [header, "|---" * (len(runs) + 2) + "|"]
    for label, key, scale, unit in FIGURES:
        cells = []
        for run in runs:
            value = run.get(key)
            bound = run.get(key + "_at_least")
            if value is not None:
                cells.append(f"{value * scale:,.2f} {unit}")
            elif bound is not None:
                # A baseline cut off by its timeout: it took longer than this.
                cells.append(f"> {bound * scale:,.0f} {unit} (timed out)")
            else:
                cells.append("—")
        exponents = []
        for a, b in zip(runs, runs[1:]):
            va, vb = a.get(key), b.get(key)
            if va and vb and va > 0 and vb > 0:
                exponents.append(
                    f"{math.log(vb / va) / math.log(b['services'] / a['services']):.2f}"
                )
            else:
                exponents.append("—")
        lines.append(f"| {label.strip()} | " + " | ".join(cells) + " | " + " → ".join(exponents) + " |")
    return "\n".join(lines)


def svg(runs):
    width, height = 330, 300
    left, right, top, bottom = 58, 12, 34, 118
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * len(PANELS)}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width * len(PANELS)}" height="{height}" fill="white"/>',
    ]
    xs = [r["services"] for r in runs]
    for index, (title, unit, series) in enumerate(PANELS):
        x0 = index * width
        plot_w = width - left - right
        plot_h = height - top - bottom
        values = [
            r[key] * scale for _, key, scale in series for r in runs if r.get(key, 0) > 0
        ]
        if not values:
            continue
        ylo = 10 ** math.floor(math.log10(min(values)))
        yhi = 10 ** math.ceil(math.log10(max(values)))
        xlo = 10 ** math.floor(math.log10(min(xs)))
        xhi = 10 ** math.ceil(math.log10(max(xs)))

        def px(x):
            return x0 + left + plot_w * math.log10(x / xlo) / math.log10(xhi / xlo)

        def py(y):
            return top + plot_h * (1 - math.log10(y / ylo) / math.log10(yhi / ylo))

        out.append(f'<text x="{x0 + width / 2}" y="16" text-anchor="middle" font-size="13">{title}</text>')
        out.append(
            f'<rect x="{x0 + left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>'
        )
        decade = ylo
        while decade <= yhi * 1.0001:
            y = py(decade)
            out.append(f'<line x1="{x0 + left}" x2="{x0 + left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 + left - 4}" y="{y + 4:.1f}" text-anchor="end">{decade:g} {unit}</text>')
            decade *= 10
        decade = xlo
        while decade <= xhi * 1.0001:
            x = px(decade)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#ddd"/>')
            out.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{decade:,.0f}</text>')
            decade *= 10
        out.append(
            f'<text x="{x0 + left + plot_w / 2}" y="{top + plot_h + 28}" text-anchor="middle">Services (log)</text>'
        )
        # A linear reference through the first figure of the first series.
        first = runs[0].get(series[0][1])
        if first:
            y0 = first * series[0][2]
            x_end = xs[-1]
            y_end = y0 * x_end / xs[0]
            out.append(
                f'<line x1="{px(xs[0]):.1f}" y1="{py(y0):.1f}" x2="{px(x_end):.1f}" '
                f'y2="{py(min(y_end, yhi)) if y_end <= yhi else py(yhi):.1f}" '
                'stroke="#999" stroke-dasharray="4 3"/>'
            )
        for number, (label, key, scale) in enumerate(series):
            colour = COLOURS[number % len(COLOURS)]
            points = [(px(r["services"]), py(r[key] * scale)) for r in runs if r.get(key, 0) > 0]
            if len(points) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
                out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
            for x, y in points:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
            legend_y = top + plot_h + 44 + number * 13
            out.append(
                f'<line x1="{x0 + left}" x2="{x0 + left + 16}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
            out.append(f'<text x="{x0 + left + 20}" y="{legend_y}">{label}</text>')
        legend_y = top + plot_h + 44 + len(series) * 13
        out.append(
            f'<line x1="{x0 + left}" x2="{x0 + left + 16}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
            'stroke="#999" stroke-dasharray="4 3"/>'
        )
        out.append(f'<text x="{x0 + left + 20}" y="{legend_y}">linear from the smallest</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    runs = sorted((read_run(path) for path in sys.argv[2:]), key=lambda r: r["services"])
    print(table(runs))
    with open(sys.argv[1], "w") as image:
        image.write(svg(runs))


if __name__ == "__main__":
    main()
