//! Who a task runs as: the app's `user` (Marathon's field), else the agent's `--default-user`;
//! root only with `--allow-root-tasks` ([`UserPolicy::resolve`]).
//!
//! The user is looked up in the system's user database (`getpwnam_r` and `getgrouplist`, so NSS
//! sources such as LDAP count) by the agent, before anything is forked: NSS is not
//! async-signal-safe, so the forked child only applies ids prepared beforehand
//! ([`Credentials::apply`]: `setgroups`, `setgid`, `setuid`, plain system calls). The lookup is
//! one small function over libc (already a dependency) rather than a crate: nix or uzers would
//! bring a new dependency for two calls.
//!
//! Process tasks: only the program drops privileges. Its supervisor (`taskrun wrap`) stays
//! taskrun's user, so the task's logs and exit file are written where the task user cannot
//! touch them; the program gets the user's uid, primary gid and supplementary groups, and
//! `HOME`, `USER`, `LOGNAME` from the user database. Docker tasks: the engine switches, with
//! `User` = the numeric `uid:gid` (images rarely carry the host's passwd entries).
//!
//! A taskrun that is not root cannot switch users: its tasks run as itself, and a task asking
//! for another user fails.

use std::ffi::{CStr, CString};
use std::io;

use serde::{Deserialize, Serialize};

/// A user of this host, as the user database has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
    /// Supplementary groups (`getgrouplist`, the primary group included as it lists it).
    #[serde(default)]
    pub groups: Vec<u32>,
    pub home: String,
}

impl Account {
    /// The ids a process takes to become this user.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
        }
    }

    /// Whether a process of `own_uid` must change ids to run as this user: only root can, and
    /// root running a task as root changes nothing.
    pub fn switches_from(&self, own_uid: u32) -> bool {
        own_uid == 0 && self.uid != 0
    }

    /// `HOME`, `USER` and `LOGNAME` of this user, as login(1) and su(1) set them.
    pub fn env(&self) -> [(String, String); 3] {
        [
            ("HOME".into(), self.home.clone()),
            ("USER".into(), self.name.clone()),
            ("LOGNAME".into(), self.name.clone()),
        ]
    }
}

/// Looks `name` up in the user database: `Ok(None)` when there is no such user.
pub fn lookup(name: &str) -> io::Result<Option<Account>> {
    let Ok(c_name) = CString::new(name) else {
        return Ok(None);
    };
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: getpwnam_r writes the entry into `pwd` and its strings into `buf` (of the
        // length given); `result` points to `pwd` on success, null when there is no such user.
        let (rc, found, pwd) = unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            (rc, !result.is_null(), pwd)
        };
        match rc {
            0 if !found => return Ok(None),
            0 => {
                // SAFETY: on success pw_name and pw_dir point to NUL-terminated strings in `buf`,
                // which is alive and unchanged here.
                let (pw_name, home) = unsafe {
                    (
                        CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned(),
                        if pwd.pw_dir.is_null() {
                            String::new()
                        } else {
                            CStr::from_ptr(pwd.pw_dir).to_string_lossy().into_owned()
                        },
                    )
                };
                let groups = group_list(&c_name, pwd.pw_gid)?;
                return Ok(Some(Account {
                    name: pw_name,
                    uid: pwd.pw_uid,
                    gid: pwd.pw_gid,
                    groups,
                    home,
                }));
            }
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            // "Not found" as some NSS modules say it.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The groups of `name` (primary `gid` included), as `initgroups` would set them.
fn group_list(name: &CStr, gid: libc::gid_t) -> io::Result<Vec<u32>> {
    let mut n: libc::c_int = 32;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; n as usize];
        let mut count = n;
        // SAFETY: `groups` has room for `count` entries; getgrouplist writes at most that many
        // and sets `count` to the number it has (or needs, when it returns -1).
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return Ok(groups);
        }
        if count <= n {
            // It failed without saying how much room it needs: grow anyway, within reason.
            count = n * 2;
        }
        if count > 65_536 {
            return Err(io::Error::other("the user is in too many groups"));
        }
        n = count;
    }
}

/// The ids a forked child takes before `exec`, prepared before the fork.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl Credentials {
    /// Becomes this user: supplementary groups, group, then user (after which the others can
    /// no longer be changed). Runs between `fork` and `exec`: plain system calls on data
    /// prepared before the fork, no allocation. (std's `CommandExt::uid`/`gid` set no
    /// supplementary groups, and its `groups` is unstable; they would also run before the
    /// other pre-exec steps.)
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: system calls on memory owned by `self`, alive for the call.
        unsafe {
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setgid(self.gid) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setuid(self.uid) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// taskrun's own effective uid and gid.
pub fn own_ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// What the operator allows (`--default-user`, `--allow-root-tasks`), and who taskrun is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPolicy {
    pub default_user: Option<String>,
    pub allow_root: bool,
    /// taskrun's effective uid (only root can switch users).
    pub own_uid: u32,
}

/// How a task is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// A process on the host (the exec driver).
    Process,
    /// A Docker container: the engine switches users, whoever taskrun is.
    Docker,
}

/// Who a task runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Nobody is named (and root is allowed, or taskrun is not root): a process runs as
    /// taskrun itself; a container as its image says where root is allowed, else as taskrun.
    Unnamed,
    /// This user.
    User(Account),
}

/// Why a task may not run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error(
        "the task would run as root (user {user:?}, uid 0) and this agent runs tasks as root only \
         with --allow-root-tasks"
    )]
    Root { user: String },
    #[error(
        "the app names no user and this agent has no --default-user, so the task would run as \
         root; set the app's user, or start taskrun with --default-user USER or \
         --allow-root-tasks"
    )]
    RootByDefault,
    #[error("user {user:?} ({from}) does not exist on this node")]
    Unknown { user: String, from: &'static str },
    #[error("cannot look up user {user:?}: {why}")]
    Lookup { user: String, why: String },
    #[error(
        "taskrun runs as uid {own_uid}, not root, so it cannot run the task as user {user:?} \
         (uid {uid}): only as itself"
    )]
    CannotSwitch {
        user: String,
        uid: u32,
        own_uid: u32,
    },
}

impl UserPolicy {
    /// Who a task whose app says `app_user` runs as, looking names up with `lookup`; the error
    /// is the task's failure message.
    pub fn resolve(
        &self,
        app_user: Option<&str>,
        runtime: Runtime,
        lookup: impl FnOnce(&str) -> io::Result<Option<Account>>,
    ) -> Result<Identity, UserError> {
        let app_user = app_user.map(str::trim).filter(|u| !u.is_empty());
        let default_user = self
            .default_user
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty());
        let (name, from) = match (app_user, default_user) {
            (Some(u), _) => (u, "the app's user"),
            (None, Some(u)) => (u, "taskrun's --default-user"),
            (None, None) => {
                // A process runs as taskrun itself; a container as taskrun too when taskrun is
                // not root (see the Docker driver), else as its image says, which may be root.
                return if self.allow_root || self.own_uid != 0 {
                    Ok(Identity::Unnamed)
                } else {
                    Err(UserError::RootByDefault)
                };
            }
        };
        let account = match lookup(name) {
            Ok(Some(a)) => a,
            Ok(None) => {
                return Err(UserError::Unknown {
                    user: name.into(),
                    from,
                });
            }
            Err(e) => {
                return Err(UserError::Lookup {
                    user: name.into(),
                    why: e.to_string(),
                });
            }
        };
        if account.uid == 0 && !self.allow_root {
            return Err(UserError::Root { user: name.into() });
        }
        if runtime == Runtime::Process && self.own_uid != 0 && account.uid != self.own_uid {
            return Err(UserError::CannotSwitch {
                user: name.into(),
                uid: account.uid,
                own_uid: self.own_uid,
            });
        }
        Ok(Identity::User(account))
    }

    /// Checks the flags at start-up: a `--default-user` that does not exist, or is root without
    /// `--allow-root-tasks`, or that a non-root taskrun cannot become, would fail every task
    /// that names no user.
    pub fn check_default(&self) -> Result<(), UserError> {
        if self.default_user.is_none() {
            return Ok(());
        }
        self.resolve(None, Runtime::Process, lookup).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, uid: u32) -> Account {
        Account {
            name: name.into(),
            uid,
            gid: uid,
            groups: vec![uid],
            home: format!("/home/{name}"),
        }
    }

    fn users(name: &str) -> io::Result<Option<Account>> {
        Ok(match name {
            "root" => Some(account("root", 0)),
            "toor" => Some(account("toor", 0)),
            "nobody" => Some(account("nobody", 65534)),
            "app" => Some(account("app", 1000)),
            "ldap-down" => return Err(io::Error::other("server unreachable")),
            _ => None,
        })
    }

    fn policy(default_user: Option<&str>, allow_root: bool, own_uid: u32) -> UserPolicy {
        UserPolicy {
            default_user: default_user.map(str::to_string),
            allow_root,
            own_uid,
        }
    }

    /// (policy, app user, runtime, expected user name (`None`: unnamed) or error start).
    type Case = (
        UserPolicy,
        Option<&'static str>,
        Runtime,
        Result<Option<&'static str>, &'static str>,
    );

    #[test]
    fn who_a_task_runs_as() {
        use Runtime::{Docker, Process};
        let cases: &[Case] = &[
            // Root taskrun, nothing allowed: named users only, never root.
            (
                policy(None, false, 0),
                None,
                Process,
                Err("the app names no user"),
            ),
            (
                policy(None, false, 0),
                None,
                Docker,
                Err("the app names no user"),
            ),
            (
                policy(None, false, 0),
                Some("nobody"),
                Process,
                Ok(Some("nobody")),
            ),
            (
                policy(None, false, 0),
                Some(" nobody "),
                Docker,
                Ok(Some("nobody")),
            ),
            (
                policy(None, false, 0),
                Some(""),
                Process,
                Err("the app names no user"),
            ),
            (
                policy(None, false, 0),
                Some("root"),
                Process,
                Err("the task would run as root (user \"root\""),
            ),
            (
                policy(None, false, 0),
                Some("toor"),
                Docker,
                Err("the task would run as root (user \"toor\""),
            ),
            (
                policy(None, false, 0),
                Some("nosuch"),
                Process,
                Err("user \"nosuch\" (the app's user) does not exist"),
            ),
            (
                policy(None, false, 0),
                Some("ldap-down"),
                Process,
                Err("cannot look up user \"ldap-down\""),
            ),
            // The default applies when the app names nobody; the app's user wins.
            (
                policy(Some("nobody"), false, 0),
                None,
                Process,
                Ok(Some("nobody")),
            ),
            (
                policy(Some("nobody"), false, 0),
                Some("app"),
                Process,
                Ok(Some("app")),
            ),
            (
                policy(Some("nosuch"), false, 0),
                None,
                Process,
                Err("user \"nosuch\" (taskrun's --default-user)"),
            ),
            (
                policy(Some("root"), false, 0),
                None,
                Process,
                Err("the task would run as root"),
            ),
            // Root allowed.
            (policy(None, true, 0), None, Process, Ok(None)),
            (policy(None, true, 0), None, Docker, Ok(None)),
            (
                policy(None, true, 0),
                Some("root"),
                Process,
                Ok(Some("root")),
            ),
            (
                policy(Some("nobody"), true, 0),
                None,
                Process,
                Ok(Some("nobody")),
            ),
            // taskrun not root: itself only, for processes; containers are the engine's to switch.
            (policy(None, false, 1000), None, Process, Ok(None)),
            (
                policy(None, false, 1000),
                Some("app"),
                Process,
                Ok(Some("app")),
            ),
            (
                policy(None, false, 1000),
                Some("nobody"),
                Process,
                Err("taskrun runs as uid 1000, not root"),
            ),
            (
                policy(None, false, 1000),
                Some("nobody"),
                Docker,
                Ok(Some("nobody")),
            ),
            (policy(None, false, 1000), None, Docker, Ok(None)),
            (
                policy(None, false, 1000),
                Some("root"),
                Docker,
                Err("the task would run as root"),
            ),
        ];
        for (i, (p, app_user, runtime, want)) in cases.iter().enumerate() {
            let got = p.resolve(*app_user, *runtime, users);
            match (want, got) {
                (Ok(None), Ok(Identity::Unnamed)) => {}
                (Ok(Some(name)), Ok(Identity::User(a))) if a.name == *name => {}
                (Err(start), Err(e)) if e.to_string().starts_with(start) => {}
                (want, got) => panic!(
                    "case {i} ({p:?}, {app_user:?}, {runtime:?}): want {want:?}, got {got:?}"
                ),
            }
        }
        // Every refusal of root names the flag that allows it.
        for e in [
            UserError::RootByDefault,
            UserError::Root {
                user: "root".into(),
            },
        ] {
            assert!(e.to_string().contains("--allow-root-tasks"), "{e}");
        }
    }

    #[test]
    fn only_root_switches_and_never_to_root() {
        assert!(account("nobody", 65534).switches_from(0));
        assert!(!account("root", 0).switches_from(0));
        assert!(!account("app", 1000).switches_from(1000));
    }

    /// Run as root (as the tests are): a child takes nobody's ids, supplementary groups
    /// included, before it runs anything.
    #[test]
    fn a_child_becomes_the_user() {
        use std::os::unix::process::CommandExt as _;
        if own_ids().0 != 0 {
            eprintln!("skipping: switching users needs root");
            return;
        }
        let nobody = lookup("nobody").unwrap().expect("a nobody user");
        let c = nobody.credentials();
        let mut cmd = std::process::Command::new("id");
        // SAFETY: apply makes plain system calls.
        unsafe {
            cmd.pre_exec(move || c.apply());
        }
        let out = cmd.output().expect("running id");
        let text = String::from_utf8_lossy(&out.stdout);
        let (uid, gid) = (nobody.uid, nobody.gid);
        assert!(
            text.starts_with(&format!("uid={uid}(nobody) gid={gid}(")),
            "{text}"
        );
        assert!(
            !text.contains("(root)"),
            "no group of root's is left: {text}"
        );
    }

    #[test]
    fn looks_users_up_in_the_user_database() {
        let root = lookup("root").unwrap().expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0), "{root:?}");
        assert!(!root.home.is_empty());
        assert_eq!(lookup("no-such-user-cairn").unwrap(), None);
        assert_eq!(lookup("nul\0inside").unwrap(), None);
        let env = root.env();
        assert_eq!(env[1], ("USER".to_string(), "root".to_string()));
    }
}
