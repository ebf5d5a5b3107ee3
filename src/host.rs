// SPDX-License-Identifier: MIT OR Apache-2.0
//! The one value that differs between the real machine and a test: built
//! once in `main` (through [`Host::from_env`]) and passed down to every
//! command. It holds the root every /proc, /sys and /etc path is joined
//! onto, the module loader, the ctnetlink counter source and the page size
//! the kernel rounds the hash to, and what this process may do beyond the
//! files under the root (`kernel_access`, `root_user`), each decided once
//! here. No other code asks whether it runs under a test: a test builds
//! its own `Host`.

use crate::kernel::ctstats::{CtNetlink, KernelNetlink, NoNetlink};
use crate::kernel::module::{KmodLoader, ModuleLoader, NoLoader};
use crate::sysroot::{SysRoot, ROOT_ENV};

/// Everything kernel-facing a command needs.
pub struct Host {
    /// Where /proc, /sys and /etc are.
    pub root: SysRoot,
    /// Loads kernel modules (libkmod on the host, nothing under a test root).
    pub loader: Box<dyn ModuleLoader>,
    /// The ctnetlink statistics (the kernel's, or none under a test root).
    pub netlink: Box<dyn CtNetlink>,
    /// The running system's page size.
    pub page_size: u64,
    /// The kernel itself may be asked beyond the files under the root
    /// (ctnetlink dumps, entering other namespaces, the kernel log): the
    /// real machine only.
    pub kernel_access: bool,
    /// The process runs as euid 0 (it may enter every namespace, and a
    /// refused write is not for want of being root).
    pub root_user: bool,
}

impl Host {
    /// The real machine: `/`, libkmod, ctnetlink.
    pub fn real() -> Self {
        Host {
            loader: Box::new(KmodLoader),
            netlink: Box::new(KernelNetlink),
            kernel_access: true,
            ..Host::at(SysRoot::host())
        }
    }

    /// A tree that stands for `/`: files only. No module is loaded and no
    /// netlink socket is opened, so nothing outside the tree is touched.
    pub fn at(root: SysRoot) -> Self {
        Host {
            root,
            loader: Box::new(NoLoader),
            netlink: Box::new(NoNetlink),
            page_size: crate::kernel::hashsize::page_size(),
            kernel_access: false,
            root_user: nix::unistd::geteuid().is_root(),
        }
    }

    /// `CONNTRACK_GUARD_ROOT` set (and not `/`): [`Host::at`] that tree;
    /// else the real machine.
    pub fn from_env() -> Self {
        match std::env::var_os(ROOT_ENV) {
            Some(v) if !v.is_empty() && std::path::Path::new(&v) != std::path::Path::new("/") => {
                Host::at(SysRoot::at(v))
            }
            _ => Host::real(),
        }
    }

    /// The same host with another counter source (tests that pair a fake
    /// tree with the real ctnetlink).
    pub fn with_netlink(mut self, netlink: Box<dyn CtNetlink>) -> Self {
        self.netlink = netlink;
        self
    }
}
