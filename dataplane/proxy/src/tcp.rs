//! L4 proxying: bytes both ways with half-close, spliced in the kernel.

use std::{rc::Rc, sync::Arc};

use monoio::{
    io::{zero_copy, AsyncWriteRent, Splitable},
    net::TcpStream,
};
use ringmesh_config::ListenerKind;

use crate::{shard::ShardCtx, stats::ListenerStats, upstream::acquire_fresh};

pub async fn serve(
    ctx: Rc<ShardCtx>,
    listener: Arc<str>,
    ls: Rc<ListenerStats>,
    down: TcpStream,
    conn: crate::ConnInfo,
) {
    let peer = conn.peer;
    let snap = ctx.snapshot();
    let cluster = match snap
        .listeners
        .iter()
        .find(|l| l.name == listener)
        .map(|l| &l.kind)
    {
        Some(ListenerKind::Tcp { cluster_idx, .. }) => snap.clusters[*cluster_idx as usize].clone(),
        _ => return,
    };
    drop(snap);
    let cells = ctx.stats.cluster(cluster.id, &cluster.name);
    let up = match acquire_fresh(&ctx.pools, &cluster, &cells, conn.orig_dst).await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%peer, cluster = %cluster.name, error = %e, "tcp: no upstream connection");
            return;
        }
    };
    cells.rq_total.inc();
    let (up_stream, _active) = up.into_parts();
    let (mut dr, mut dw) = down.into_split();
    let (mut ur, mut uw) = up_stream.into_split();
    let (sent, received) = monoio::join!(
        async {
            let r = zero_copy(&mut dr, &mut uw).await;
            let _ = uw.shutdown().await;
            r
        },
        async {
            let r = zero_copy(&mut ur, &mut dw).await;
            let _ = dw.shutdown().await;
            r
        }
    );
    if let Ok(n) = sent {
        ls.cells.rx_bytes.add(n);
    }
    if let Ok(n) = received {
        ls.cells.tx_bytes.add(n);
    }
}
