/* SPDX-License-Identifier: MIT OR Apache-2.0
 *
 * tests/vm Docker scenario: a bounded UDP load generator. Sends COUNT
 * tracker-connect-sized requests to ADDR:PORT at RATE per second, each
 * from its own socket bound to a distinct source port (BASE, BASE+1, ...)
 * so that every request is a new conntrack flow, and counts the answers.
 * It stops WAIT seconds after the last send, or at LIMIT seconds in all.
 *
 * A request the host's conntrack refuses on output fails in sendto()
 * (EPERM); it counts as lost like one whose answer never comes.
 *
 * Usage: udp-load ADDR PORT COUNT RATE BASE [WAIT_S [LIMIT_S]]
 * Prints one line: count= sent= send_errors= replies= lost= loss_pct=
 *                  elapsed_s= rate=   and exits 0 (1 on a usage or
 *                  setup error, never because of loss).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s ADDR PORT COUNT RATE BASE [WAIT_S [LIMIT_S]]\n", argv[0]);
        return 1;
    }
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) { fprintf(stderr, "bad ADDR\n"); return 1; }
    long count = atol(argv[3]);
    double rate = atof(argv[4]);
    long base = atol(argv[5]);
    double wait_s = argc > 6 ? atof(argv[6]) : 2.0;
    double limit_s = argc > 7 ? atof(argv[7]) : 60.0;
    if (count < 1 || rate <= 0 || base < 1024 || base + count > 65535) {
        fprintf(stderr, "COUNT, RATE or BASE out of range\n");
        return 1;
    }

    /* One open socket per request until it is answered. */
    struct rlimit rl = { (rlim_t)count + 64, (rlim_t)count + 64 };
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) { perror("setrlimit"); return 1; }
    int ep = epoll_create1(0);
    if (ep < 0) { perror("epoll_create1"); return 1; }

    long sent = 0, send_errors = 0, replies = 0, i = 0;
    double t0 = now(), last_send = t0, end;
    for (;;) {
        double t = now();
        if (t - t0 > limit_s) break;
        if (i >= count && t - last_send > wait_s) break;
        if (i < count && t >= t0 + i / rate) {
            int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) { perror("socket"); return 1; }
            struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(base + i) };
            if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
                fprintf(stderr, "bind port %ld: %s\n", base + i, strerror(errno));
                return 1;
            }
            unsigned char req[16] = { 0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80 }; /* connect */
            uint32_t txid = htonl((uint32_t)i);
            memcpy(req + 12, &txid, 4);
            if (sendto(fd, req, sizeof req, 0, (struct sockaddr *)&dst, sizeof dst) == sizeof req) {
                sent++;
                struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            } else {
                send_errors++;
                close(fd);
            }
            last_send = now();
            i++;
            continue;
        }
        int ms = 5;
        if (i < count) {
            double due = (t0 + i / rate - t) * 1000.0;
            ms = due < 0 ? 0 : due > 5 ? 5 : (int)due;
        }
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, ms);
        for (int k = 0; k < n; k++) {
            unsigned char buf[64];
            if (recv(evs[k].data.fd, buf, sizeof buf, 0) > 0) replies++;
            close(evs[k].data.fd);
        }
    }
    end = now();
    double send_span = last_send - t0 > 0 ? last_send - t0 : 1e-9;
    printf("count=%ld sent=%ld send_errors=%ld replies=%ld lost=%ld loss_pct=%.1f elapsed_s=%.1f rate=%.0f\n",
           count, sent, send_errors, replies, count - replies,
           100.0 * (double)(count - replies) / (double)count, end - t0,
           (double)i / send_span);
    return 0;
}
