#!/usr/bin/env bash
# Regenerates netlink-ipvs/tests/captures/: runs real ipvsadm commands in
# the guest while tcpdump records an nlmon link, one capture per command.
#
#   integration/scripts/capture.sh        (on the host: boots the guest)
#
# Each entry: NAME|SETUP (ipvsadm arguments run before the capture, ';'
# separated)|COMMAND (captured).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
guest_out="$root/target/guest/captures"   # writable from the guest
if [ "${1:-}" != "--in-guest" ]; then
    rm -rf "$guest_out"
    bash "$root/integration/scripts/in-guest.sh" -- bash "$0" --in-guest
    out="$root/netlink-ipvs/tests/captures"
    rm -rf "$out"
    mkdir -p "$out"
    cp "$guest_out"/*.txt "$out"/
    echo "wrote $(ls "$out" | wc -l) captures to $out"
    exit 0
fi
work=$(mktemp -d)
note="$(uname -r), $(ipvsadm --version | cut -d' ' -f1-2)"

ip link add nlmon0 type nlmon
ip link set nlmon0 up
ip link set lo up

capture() {
    local name=$1 setup=$2 command=$3 attempt
    for attempt in 1 2 3; do
        ipvsadm -C; ipvsadm --stop-daemon backup 2> /dev/null || true; ipvsadm --stop-daemon master 2> /dev/null || true
        IFS=';' read -ra steps <<< "$setup"
        for step in "${steps[@]}"; do
            [ -n "${step// }" ] && eval "ipvsadm $step" > /dev/null
        done
        rm -f "$work/$name.pcap"
        tcpdump -i nlmon0 -U -w "$work/$name.pcap" 2> /dev/null &
        local dump=$!
        # tcpdump is slow to start under emulation: wait for its file header.
        for _ in $(seq 50); do
            [ -s "$work/$name.pcap" ] && break
            sleep 0.1
        done
        sleep 0.5
        eval "$command" > "$work/$name.out" 2>&1 || true
        sleep 1
        kill -INT "$dump"; wait "$dump" 2> /dev/null || true
        if python3 "$root/integration/scripts/pcap-to-capture.py" "$work/$name.pcap" "$command" "$note" > "$work/$name.txt"; then
            echo "captured $name: $(grep -c '^[<>]' "$work/$name.txt") messages"
            return 0
        fi
        echo "retrying $name (attempt $attempt captured nothing)"
    done
    echo "capture: FAILED to capture $name" >&2
    return 1
}

svc="-A -t 10.0.0.1:80 -s rr"
capture add_service_tcp_rr "" "ipvsadm -A -t 10.0.0.1:80 -s rr"
capture add_service_udp_wrr "" "ipvsadm -A -u 10.0.0.1:53 -s wrr"
capture add_service_sctp "" "ipvsadm -A --sctp-service 10.0.0.1:3868 -s rr"
capture add_service_fwmark_sh_flags "" "ipvsadm -A -f 42 -s sh -b sh-fallback,sh-port"
capture add_service_ipv6_persistent "" "ipvsadm -A -t [2001:db8::1]:443 -s wlc -p 600"
capture add_service_persistent_netmask "" "ipvsadm -A -t 10.0.0.2:80 -s rr -p 300 -M 255.255.255.0"
capture add_service_mh_ops "" "ipvsadm -A -u 10.0.0.3:80 -s mh -b mh-port -o"
capture add_service_pe_sip "" "ipvsadm -A -u 10.0.0.4:5060 -s rr -p 60 --pe sip"
capture edit_service "$svc" "ipvsadm -E -t 10.0.0.1:80 -s wlc"
capture delete_service "$svc" "ipvsadm -D -t 10.0.0.1:80"
capture add_dest_masq "$svc" "ipvsadm -a -t 10.0.0.1:80 -r 10.244.0.11:9376 -m -w 1"
capture add_dest_route_weight0 "$svc" "ipvsadm -a -t 10.0.0.1:80 -r 10.244.0.12:9376 -g -w 0"
capture add_dest_tunnel_thresholds "$svc" "ipvsadm -a -t 10.0.0.1:80 -r 10.244.0.13:9376 -i -w 5 -x 100 -y 10"
capture add_dest_tunnel_gue "$svc" "ipvsadm -a -t 10.0.0.1:80 -r 10.244.0.14:9376 -i --tun-type gue --tun-port 6080 --tun-nocsum"
capture add_dest_mixed_family "$svc" "ipvsadm -a -t 10.0.0.1:80 -r [2001:db8::14]:9376 -i -w 1"
capture edit_dest "$svc; -a -t 10.0.0.1:80 -r 10.244.0.11:9376 -m -w 1" "ipvsadm -e -t 10.0.0.1:80 -r 10.244.0.11:9376 -m -w 3"
capture delete_dest "$svc; -a -t 10.0.0.1:80 -r 10.244.0.11:9376 -m -w 1" "ipvsadm -d -t 10.0.0.1:80 -r 10.244.0.11:9376"
capture set_timeouts "" "ipvsadm --set 900 120 300"
capture zero_all "$svc" "ipvsadm -Z"
capture zero_service "$svc" "ipvsadm -Z -t 10.0.0.1:80"
capture flush "$svc" "ipvsadm -C"
capture start_daemon "" "ipvsadm --start-daemon backup --mcast-interface lo --syncid 7"
capture stop_daemon "--start-daemon backup --mcast-interface lo --syncid 7" "ipvsadm --stop-daemon backup"
table="$svc; -a -t 10.0.0.1:80 -r 10.244.0.11:9376 -m -w 1; -a -t 10.0.0.1:80 -r 10.244.0.12:9376 -m -w 2; -A -u 10.0.0.1:53 -s wrr; -A -t [2001:db8::1]:443 -s wlc -p 600; -a -t [2001:db8::1]:443 -r [2001:db8::11]:8443 -m -w 1"
capture list_table "$table" "ipvsadm -Ln"
capture get_service "$table" "ipvsadm -Ln -t 10.0.0.1:80"
capture get_timeouts "" "ipvsadm -L --timeout"
capture list_daemons "--start-daemon backup --mcast-interface lo --syncid 7" "ipvsadm -L --daemon"
capture error_duplicate_service "$svc" "ipvsadm -A -t 10.0.0.1:80 -s rr"
capture error_missing_service "" "ipvsadm -D -t 10.0.0.9:80"
capture error_missing_dest "$svc" "ipvsadm -d -t 10.0.0.1:80 -r 10.244.0.99:80"
capture error_unknown_scheduler "" "ipvsadm -A -t 10.0.0.5:80 -s nosuch"
ipvsadm --stop-daemon backup 2> /dev/null || true
ipvsadm -C

mkdir -p "$guest_out"
cp "$work"/*.txt "$guest_out"/
