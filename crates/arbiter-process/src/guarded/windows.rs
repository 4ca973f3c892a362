//! Windows: the command in a job object that is killed when its handle closes.
//!
//! NOT COMPILED in this repository's CI (Linux only): keep it small and review it by hand.

use std::ffi::OsString;

use arbiter_core::{Error, Result};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation, SetInformationJobObject,
    TerminateJobObject,
};
use windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP;

use super::GuardedChild;

/// A job object handle; closing it kills every process of the job.
#[derive(Debug)]
pub(super) struct Job(HANDLE);

// SAFETY: a job handle may be used and closed from any thread.
unsafe impl Send for Job {}
// SAFETY: as above; the functions used on it are thread-safe.
unsafe impl Sync for Job {}

impl Job {
    fn new() -> Result<Job> {
        // SAFETY: null attributes and name are allowed.
        let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if handle.is_null() {
            return Err(Error::internal(format!(
                "cannot create a job object: {}",
                std::io::Error::last_os_error()
            )));
        }
        let job = Job(handle);
        // SAFETY: an all-zero JOBOBJECT_EXTENDED_LIMIT_INFORMATION is valid (plain data).
        let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        // SAFETY: `info` lives across the call and its size is passed.
        let ok = unsafe {
            SetInformationJobObject(
                job.0,
                JobObjectExtendedLimitInformation,
                (&raw const info).cast(),
                std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        };
        if ok == 0 {
            return Err(Error::internal(format!(
                "cannot configure a job object: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(job)
    }

    pub(super) fn terminate(&self) {
        // SAFETY: the handle is open until drop.
        unsafe { TerminateJobObject(self.0, 1) };
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: the handle is open and closed only here.
        unsafe { CloseHandle(self.0) };
    }
}

pub(super) fn spawn(spawn: &super::Spawn) -> Result<GuardedChild> {
    let argv = &spawn.argv;
    let job = Job::new()?;
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .creation_flags(CREATE_NEW_PROCESS_GROUP)
        .kill_on_drop(false);
    spawn.configure(&mut cmd)?;
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::internal(format!("cannot run {}: {e}", argv[0].to_string_lossy())))?;
    let pid = child.id().unwrap_or(0);
    let Some(process) = child.raw_handle() else {
        return Err(Error::internal("the command exited before it could be put in a job"));
    };
    // SAFETY: both handles are open.
    if unsafe { AssignProcessToJobObject(job.0, process as HANDLE) } == 0 {
        let e = std::io::Error::last_os_error();
        let _ = child.start_kill();
        return Err(Error::internal(format!("cannot put process {pid} in a job: {e}")));
    }
    Ok(GuardedChild { child, pid, job })
}
