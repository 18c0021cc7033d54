/* What a hostile container tries from inside, for keel's security tests: every line it
 * prints says whether the attempt was refused. Built static by tests/build.rs so that it
 * runs in any image. It must never do harm when an attempt succeeds: writes put back the
 * value just read, the sysrq trigger is opened and never written, a mount goes on an empty
 * directory of its own. It runs only when told it is inside a test container
 * (`--inside-keel-test-container`): on a host, root would be allowed all of it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *what, long rc) {
    if (rc < 0)
        printf("%s: refused (%s)\n", what, strerror(errno));
    else
        printf("%s: ALLOWED\n", what);
}

/* A masked file reads as empty (bound to /dev/null); an absent one fails to open (-1). */
static void read_masked(const char *path) {
    char buffer[16];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buffer, sizeof buffer) : -1;
    if (fd >= 0) close(fd);
    printf("read %s: %s (%zd bytes)\n", path, n > 0 ? "ALLOWED" : "refused", n);
}

int main(int argc, char **argv) {
    char value[4096];
    if (argc != 2 || strcmp(argv[1], "--inside-keel-test-container") != 0) {
        fprintf(stderr, "attack: runs only inside keel's test containers\n");
        return 2;
    }
    int fd = open("/proc/sys/kernel/core_pattern", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, value, sizeof value) : -1;
    if (fd >= 0) close(fd);
    fd = open("/proc/sys/kernel/core_pattern", O_WRONLY);
    if (fd >= 0 && n > 0) {
        /* Put back what was there: harmless even if the protection failed. */
        report("write /proc/sys/kernel/core_pattern", write(fd, value, n));
        close(fd);
    } else {
        report("write /proc/sys/kernel/core_pattern", -1);
    }
    fd = open("/proc/sysrq-trigger", O_WRONLY);
    report("open /proc/sysrq-trigger for writing", fd);
    if (fd >= 0) close(fd);
    mkdir("/attack-mnt", 0700);
    report("mount tmpfs", mount("none", "/attack-mnt", "tmpfs", 0, NULL));
    /* The host's first disk: inert under nodev mounts, and refused by the filter first. */
    report("mknod block device", mknod("/disk", S_IFBLK | 0600, makedev(8, 0)));
    report("mknod character device", mknod("/mem", S_IFCHR | 0600, makedev(1, 1)));
    /* What the filter must still allow: a FIFO. */
    if (mknod("/attack-fifo", S_IFIFO | 0600, 0) == 0)
        printf("mknod fifo: created\n");
    else
        printf("mknod fifo: failed (%s)\n", strerror(errno));
    report("unshare user namespace", unshare(CLONE_NEWUSER));
    report("unshare mount namespace", unshare(CLONE_NEWNS));

    struct bpf_insn prog[2] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0},
        {.code = BPF_JMP | BPF_EXIT},
    };
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insns = (unsigned long)prog;
    attr.insn_cnt = 2;
    attr.license = (unsigned long)"GPL";
    report("bpf load", syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr));
    /* PID 1 of a pod sharing its PID namespace is keel's pause: a root process of the host. */
    report("ptrace attach pid 1", ptrace(PTRACE_ATTACH, 1, NULL, NULL));
    report("keyctl join session keyring", syscall(SYS_keyctl, 1, NULL));

    read_masked("/proc/kcore");
    read_masked("/proc/keys");
    printf("attacks done\n");
    fflush(stdout);
    return 0;
}
