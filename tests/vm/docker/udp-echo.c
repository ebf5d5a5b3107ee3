/* SPDX-License-Identifier: MIT OR Apache-2.0
 *
 * tests/vm Docker scenario: the UDP service inside the container.
 * Answers every datagram on 0.0.0.0:PORT with the same bytes, like a
 * tracker answering a connect request. Built static on the host
 * (gcc -static -O2) so the imported image needs no libc.
 *
 * Usage: udp-echo [PORT]   (default 6969)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 6969;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    int big = 4 << 20;

    if (fd < 0) { perror("socket"); return 1; }
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    fprintf(stderr, "udp-echo: listening on 0.0.0.0:%d\n", port);
    for (;;) {
        char buf[2048];
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n < 0) continue;
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
    }
}
