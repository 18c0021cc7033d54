//! Network interfaces by name, over rtnetlink: what the service proxy (its dummy interface)
//! and the pod runtime (the bridge, veths) both look up and remove.

use futures::TryStreamExt;
use rtnetlink::Handle;

/// The index of the interface called `name`, `None` if there is none.
pub async fn find_link(handle: &Handle, name: &str) -> Result<Option<u32>, rtnetlink::Error> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        // The kernel answers ENODEV for a name it does not know.
        Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ENODEV => Ok(None),
        Err(source) => Err(source),
    }
}

/// Deletes the interface called `name`; returns whether there was one.
pub async fn delete_link(handle: &Handle, name: &str) -> Result<bool, rtnetlink::Error> {
    let Some(index) = find_link(handle, name).await? else {
        return Ok(false);
    };
    handle.link().del(index).execute().await?;
    Ok(true)
}
