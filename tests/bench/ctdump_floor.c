/* SPDX-License-Identifier: MIT OR Apache-2.0
 *
 * The floor for `conntrack-guard top`: one ctnetlink CT dump of the
 * current network namespace, received and discarded. It only walks the
 * netlink headers to find NLMSG_DONE; it prints the number of entry
 * messages so a benchmark can check both read the same table.
 * Build: cc -O2 -o ctdump_floor ctdump_floor.c
 */
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	static char buf[65536];
	struct {
		struct nlmsghdr nh;
		struct nfgenmsg nf;
	} req;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	unsigned long entries = 0;
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("socket");
		return 1;
	}
	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = sizeof(req);
	req.nh.nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nh.nlmsg_seq = 1;
	req.nf.nfgen_family = AF_UNSPEC;
	req.nf.version = NFNETLINK_V0;
	if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("sendto");
		return 1;
	}
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (n < 0) {
			perror("recv");
			return 1;
		}
		for (; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				printf("%lu\n", entries);
				return 0;
			}
			if (h->nlmsg_type == NLMSG_ERROR)
				return 1;
			entries++;
		}
	}
}
