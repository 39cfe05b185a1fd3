#!/bin/bash
# How the files in this folder were captured: run in the guest with
#   GUEST_RWDIR=/tmp/fmt integration/scripts/in-guest.sh -- bash netlink-ipvs/src/format/tests/captured/capture.sh
# (writes /tmp/fmt/out; the tests use <scenario>.nosort.rate-exact2.txt as <scenario>.nosort.rate-exact.txt).
# Runs in the guest: builds ipvsadm tables and saves ipvsadm's outputs.
out=/tmp/fmt/out
mkdir -p $out
for m in ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_sh ip_vs_mh ip_vs_pe_sip dummy; do modprobe $m || echo "modprobe $m failed"; done
ipvsadm --version > $out/version.txt 2>&1
run() { echo "+ ipvsadm $*" >> $out/$scenario.log; ipvsadm "$@" >> $out/$scenario.log 2>&1 || echo "FAILED: ipvsadm $*" >> $out/$scenario.log; }
capture() {
  ipvsadm -Ln --nosort > $out/$scenario.nosort.txt
  ipvsadm -Ln --stats --exact --nosort > $out/$scenario.nosort.stats-exact.txt
  ipvsadm -Ln --rate --exact --nosort > $out/$scenario.nosort.rate-exact.txt
  ipvsadm -Ln --rate > $out/$scenario.rate.txt
  ipvsadm -Ln --rate --exact --nosort > $out/$scenario.nosort.rate-exact2.txt
  ipvsadm -Ln --stats > $out/$scenario.stats.txt
  ipvsadm -Ln --stats --exact --nosort > $out/$scenario.nosort.stats-exact2.txt
  ipvsadm -Ln > $out/$scenario.list.txt
  ipvsadm -Sn > $out/$scenario.save.txt
  ipvsadm -Ln --thresholds > $out/$scenario.thresholds.txt
  ipvsadm -Ln --persistent-conn > $out/$scenario.persistent-conn.txt
  ipvsadm -Ln --tun-info > $out/$scenario.tun-info.txt
  ipvsadm -Ln --exact --stats > $out/$scenario.stats-exact.txt
  ipvsadm -Ln --tun-info --nosort > $out/$scenario.nosort.tun-info.txt
  ipvsadm -Ln --thresholds --nosort > $out/$scenario.nosort.thresholds.txt
  ipvsadm -Ln --persistent-conn --nosort > $out/$scenario.nosort.persistent-conn.txt
  ipvsadm -Ln --nosort > $out/$scenario.nosort-after.txt
}

scenario=varied
: > $out/$scenario.log
run -C
run -A -t 10.0.0.10:80 -s rr
run -A -t 10.0.0.9:8080 -s wlc
run -A -t 10.0.0.9:80 -s wrr
run -a -t 10.0.0.10:80 -r 10.1.0.10:8080 -m -w 1
run -a -t 10.0.0.10:80 -r 10.1.0.9:8080 -m -w 0
run -a -t 10.0.0.10:80 -r 10.1.0.9:80 -m -w 65535 -x 100 -y 10
run -a -t 10.0.0.10:80 -r 127.0.0.1:80 -m -w 2
run -a -t 10.0.0.9:8080 -r 10.1.0.90:8080 -m -w 1
run -a -t 10.0.0.9:80 -r 10.1.0.20 -g -w 3
run -a -t 10.0.0.9:80 -r 10.1.0.21 -i -w 2
run -a -t 10.0.0.9:80 -r 10.1.0.22 -i -w 1 --tun-type gue --tun-port 6080
run -a -t 10.0.0.9:80 -r 10.1.0.23 -i -w 1 --tun-type gue --tun-port 6081 --tun-csum
run -a -t 10.0.0.9:80 -r 10.1.0.25 -i -w 1 --tun-type gue --tun-port 6082 --tun-remcsum
run -a -t 10.0.0.9:80 -r 10.1.0.24 -i -w 1 --tun-type gre --tun-csum
run -a -t 10.0.0.9:80 -r 10.1.0.26 -i -w 1 --tun-type gre
run -a -t 10.0.0.9:80 -r [2001:db8:1::99]:80 -i -w 1
run -A -u 10.0.0.9:53 -s rr -o
run -a -u 10.0.0.9:53 -r 10.1.0.53:53 -m -w 1
run -a -u 10.0.0.9:53 -r 10.1.0.54:53 -m -w 1
run -A -u 10.0.0.10:53 -s wrr
run -a -u 10.0.0.10:53 -r 10.1.0.55:5353 -m -w 4
run -A --sctp-service 10.0.0.11:3868 -s lc
run -a --sctp-service 10.0.0.11:3868 -r 10.1.0.11:3868 -m -w 2
run -A -t 10.0.0.12:443 -s sh -b sh-fallback,sh-port
run -a -t 10.0.0.12:443 -r 10.1.0.12:443 -m -w 1
run -A -t 10.0.0.13:443 -s mh -b mh-port
run -A -t 10.0.0.17:443 -s mh -b mh-fallback,mh-port
run -A -t 10.0.0.18:443 -s sh -b sh-port
run -A -t 10.0.0.14:443 -s wlc -p 600 -M 255.255.255.0
run -a -t 10.0.0.14:443 -r 10.1.0.14:443 -m -w 1
run -A -t 10.0.0.15:0 -s rr -p
run -A -t 10.0.0.19:80 -s rr -b flag-1,flag-3
run -A -u 10.0.0.16:5060 -s rr -p 60 --pe sip
run -A -u 10.0.0.20:5060 -s rr -p 60 -M 255.255.0.0 --pe sip -o
run -A -t [2001:db8::10]:80 -s rr
run -A -t [2001:db8::9]:80 -s rr -p 120 -M 64
run -A -t [2001:db8::9]:443 -s rr -p 120
run -a -t [2001:db8::10]:80 -r [2001:db8:1::10]:8080 -m -w 1
run -a -t [2001:db8::10]:80 -r [2001:db8:1::9]:8080 -m -w 1
run -a -t [2001:db8::10]:80 -r [2001:db8:1::9]:80 -m -w 1
run -a -t [2001:db8::10]:80 -r 10.1.0.30 -i -w 1
run -a -t [2001:db8::10]:80 -r 10.1.0.31 -i -w 1 --tun-type gue --tun-port 6080
run -A -u [2001:db8::53]:53 -s rr
run -A --sctp-service [2001:db8::11]:3868 -s rr
run -A -f 42 -s rr
run -a -f 42 -r 10.1.0.42:80 -m -w 1
run -a -f 42 -r 10.1.0.43 -g -w 1
run -A -f 7 -s wlc -p 30
run -A -f 43 -6 -s wrr -p 60
run -A -f 44 -6 -s rr -p 60 -M 96
run -a -f 43 -6 -r [2001:db8:1::43]:80 -m -w 1
run -A -f 42 -6 -s rr

# Traffic, so that counters and rates are not all zero.
ip link add dummy0 type dummy
ip link set dummy0 up
ip addr add 10.0.0.9/32 dev dummy0
ip addr add 10.0.0.10/32 dev dummy0
ip route add 10.1.0.0/16 dev dummy0
for i in $(seq 1 20); do timeout 0.2 bash -c 'echo > /dev/tcp/10.0.0.10/80' 2>/dev/null; done
sleep 20
for i in $(seq 1 300); do echo "hello $i" > /dev/udp/10.0.0.10/53; echo "x" > /dev/udp/10.0.0.9/53; done 2>/dev/null
sleep 5
for i in $(seq 1 300); do echo "hello $i" > /dev/udp/10.0.0.10/53; done 2>/dev/null
sleep 3
capture
ipvsadm -Ln --stats --exact > $out/$scenario.stats-exact-final.txt

scenario=wrap
: > $out/$scenario.log
run -C
for a in 10.0.0.1 100.0.0.1 172.16.0.1 192.168.0.1 200.0.0.1 10.0.0.2 127.0.0.5 128.0.0.5 203.0.113.7 1.2.3.4 250.1.1.1; do
  run -A -t $a:80 -s rr
done
for r in 10.1.0.1 100.1.0.1 172.16.1.1 192.168.1.1 200.1.0.1 1.1.1.1 129.0.0.1 250.0.0.1 ; do
  run -a -t 10.0.0.1:80 -r $r:80 -m -w 1
done
run -a -t 10.0.0.1:80 -r [2001:db8::1]:80 -i -w 1
run -a -t 10.0.0.1:80 -r [::10.1.2.3]:80 -i -w 1
run -A -t [2001:db8::1]:80 -s rr
run -A -t [fe80::1]:80 -s rr
run -A -t [::1]:80 -s rr
run -A -t [ff02::1]:80 -s rr
run -a -t [2001:db8::1]:80 -r [2001:db8::5]:80 -m -w 1
run -a -t [2001:db8::1]:80 -r 10.2.0.1 -i -w 1
run -a -t [2001:db8::1]:80 -r 200.2.0.1 -i -w 1
run -a -t [2001:db8::1]:80 -r [::5]:80 -m -w 1
run -A -f 3000000000 -s rr
run -A -f 1 -s rr
run -A -f 4294967295 -s rr
run -A -f 2147483648 -6 -s rr
capture

ipvsadm -C
echo done > $out/done
