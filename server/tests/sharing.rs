//! Shares with roles, through the gRPC services of a real server on loopback, on SQLite
//! and (when configured) PostgreSQL: the permission matrix of every operation against
//! every kind of caller, re-shares that cannot escalate, revokes that cascade and end
//! the revoked user's Watch stream, root names with a suffix, and bad input.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Kind;
use futures::StreamExt;
use futures::stream::BoxStream;
use loft_remote::client::{ConnectOptions, GrpcClient, ServerAddress};
use loft_remote::content::{Manifest, encode};
use loft_remote::errors::ErrorKind;
use loft_remote::proto::{self, NodeKind, Role, watch_event::Event};
use loft_remote::{RemoteClient, RemoteResult};
use loft_server::{Backend, Listen, ServerConfig, add_user};

const DEADLINE: Duration = Duration::from_secs(5);
const PASSWORD: &str = "secret";

/// A server on loopback serving `stores`, stopped when dropped.
struct World {
    stores: common::Stores,
    backend: Backend,
    address: ServerAddress,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl World {
    async fn start(kind: Kind) -> World {
        let stores = common::stores(kind).await;
        let backend = stores.backend().await;
        let port_file = stores.dir.path().join("port");
        let mut config = ServerConfig::new(
            stores.dir.path().to_path_buf(),
            Listen::Tcp("127.0.0.1:0".parse().unwrap()),
        );
        config.port_file = Some(port_file.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = backend.clone();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            loft_server::serve(config, serving, shutdown)
                .await
                .expect("serving");
        });
        let address = tokio::time::timeout(DEADLINE, async {
            loop {
                if let Ok(text) = std::fs::read_to_string(&port_file)
                    && text.ends_with('\n')
                {
                    return format!("http://{}", text.trim()).parse().unwrap();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the server did not start");
        World {
            stores,
            backend,
            address,
            stop: Some(stop),
        }
    }

    /// Adds `name` and signs it in.
    async fn user(&self, name: &str) -> (GrpcClient, proto::Session) {
        add_user(&self.backend, name, PASSWORD).await.unwrap();
        self.login(name).await
    }

    async fn login(&self, name: &str) -> (GrpcClient, proto::Session) {
        let client = GrpcClient::connect(&self.address, &ConnectOptions::default()).unwrap();
        let reply = client.login(name, PASSWORD, "device").await.unwrap();
        client.set_token(Some(reply.token));
        (client, reply.session.unwrap())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = &self.stores;
    }
}

fn dir(parent: u64, name: &str) -> proto::CreateRequest {
    proto::CreateRequest {
        parent,
        name: name.as_bytes().to_vec().into(),
        kind: NodeKind::Directory as i32,
        mode: 0o755,
        exclusive: true,
        ..Default::default()
    }
}

fn file(parent: u64, name: &str) -> proto::CreateRequest {
    proto::CreateRequest {
        kind: NodeKind::File as i32,
        mode: 0o644,
        ..dir(parent, name)
    }
}

fn share(node: u64, user: &str, role: Role) -> proto::ShareRequest {
    proto::ShareRequest {
        node,
        user: user.to_string(),
        role: role as i32,
    }
}

/// Uploads `data` as chunks and returns its manifest.
async fn upload(client: &GrpcClient, data: &[u8]) -> RemoteResult<Manifest> {
    let manifest = Manifest::of_bytes(data);
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    let mut offset = 0usize;
    let mut chunks = Vec::new();
    for chunk in &manifest.chunks {
        let plain = &data[offset..offset + chunk.length as usize];
        offset += chunk.length as usize;
        let encoded = encode(plain);
        chunks.push(proto::ChunkUpload {
            id: chunk.id.0.to_vec().into(),
            data: encoded.data.into(),
            compressed: encoded.compressed,
            length: plain.len() as u32,
        });
    }
    let send = async move {
        for chunk in chunks {
            let _ = sender.send(chunk).await;
        }
    };
    let (reply, ()) = tokio::join!(client.put_chunks(receiver), send);
    reply.map(|_| manifest)
}

fn commit_new(parent: u64, name: &str, manifest: &Manifest) -> proto::CommitRequest {
    proto::CommitRequest {
        manifest: Some(manifest.into()),
        parent,
        name: name.as_bytes().to_vec().into(),
        mode: 0o644,
        ..Default::default()
    }
}

/// Reads every chunk of `manifest`; the first error if any.
async fn read_chunks(client: &GrpcClient, manifest: &proto::Manifest) -> RemoteResult<Vec<u8>> {
    let ranges = manifest
        .chunks
        .iter()
        .map(|chunk| proto::ChunkRange {
            id: chunk.id.clone(),
            offset: 0,
            length: 0,
        })
        .collect();
    let mut stream = client.get_chunks(ranges).await?;
    let mut data = Vec::new();
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        data.extend(
            loft_remote::content::decode(&piece.data, piece.compressed, piece.length as usize)
                .expect("decoding a chunk"),
        );
    }
    Ok(data)
}

type Events = BoxStream<'static, RemoteResult<proto::WatchEvent>>;

/// Reads `events` until a caught-up marker; returns the changes before it.
async fn until_caught_up(events: &mut Events) -> Vec<proto::Change> {
    tokio::time::timeout(DEADLINE, async {
        let mut changes = Vec::new();
        while let Some(event) = events.next().await {
            match event.expect("watch event").event {
                Some(Event::Change(change)) => changes.push(change),
                Some(Event::CaughtUp(_)) => return changes,
                _ => {}
            }
        }
        panic!("the Watch stream ended before catching up");
    })
    .await
    .expect("caught up in time")
}

/// What a call did, as the matrix records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Allowed,
    Denied(ErrorKind),
}

use Outcome::{Allowed as A, Denied};
const P: Outcome = Denied(ErrorKind::PermissionDenied);
const N: Outcome = Denied(ErrorKind::NotFound);

fn outcome<T>(result: RemoteResult<T>) -> Outcome {
    match result {
        Ok(_) => Outcome::Allowed,
        Err(e) => Denied(e.kind),
    }
}

/// The callers of the matrix, in the order of its columns.
const WHO: [&str; 6] = [
    "owner",
    "editor",
    "commenter",
    "viewer",
    "stranger",
    "revoked",
];

/// Expected outcome of each operation for each caller (columns as in [`WHO`]). Items a
/// caller may not see are NOT_FOUND; visible but not allowed is PERMISSION_DENIED.
/// `have_chunks` never fails: "denied" there means the chunk is reported absent.
/// Uploading bytes (`put_chunks`) grants nothing, so anyone may.
const MATRIX: &[(&str, [Outcome; 6])] = &[
    ("lookup", [A, A, A, A, N, N]),
    ("resolve", [A, A, A, A, N, N]),
    ("stat", [A, A, A, A, N, N]),
    ("list", [A, A, A, A, N, N]),
    ("create", [A, A, P, P, N, N]),
    ("rename", [A, A, P, P, N, N]),
    ("remove", [A, A, P, P, N, N]),
    ("setattr", [A, A, P, P, N, N]),
    ("set_xattr", [A, A, P, P, N, N]),
    ("get_xattr", [A, A, A, A, N, N]),
    ("list_xattr", [A, A, A, A, N, N]),
    ("remove_xattr", [A, A, P, P, N, N]),
    ("have_chunks", [A, A, A, A, N, N]),
    ("put_chunks", [A, A, A, A, A, A]),
    ("get_chunks", [A, A, A, A, N, N]),
    ("get_manifest", [A, A, A, A, N, N]),
    ("commit", [A, A, P, P, N, N]),
    ("list_versions", [A, A, A, A, N, N]),
    ("watch", [A, A, A, A, N, N]),
    ("share", [A, P, P, P, N, N]),
    ("list_shares", [A, A, A, A, N, N]),
    ("revoke_share", [A, P, P, P, N, N]),
    ("comment", [A, A, A, P, N, N]),
    ("list_comments", [A, A, A, A, N, N]),
    ("search", [A, A, A, A, N, N]),
];

/// The shared folder the matrix works on, made by the owner.
struct Fixture {
    proj: proto::Node,
    doc: proto::Node,
    manifest: proto::Manifest,
}

/// Runs operation `op` as `who` (its client) on the fixture.
async fn run(op: &str, who: &str, client: &GrpcClient, f: &Fixture) -> Outcome {
    let (proj, doc) = (f.proj.id, f.doc.id);
    let mine = |prefix: &str| format!("{prefix}-{who}");
    match op {
        "lookup" => outcome(client.lookup(proj, b"doc.txt").await),
        "resolve" => outcome(client.resolve(b"/proj/doc.txt").await),
        "stat" => outcome(client.stat(doc).await),
        "list" => outcome(client.list(proj, b"", 0).await),
        "create" => outcome(client.create(dir(proj, &mine("new"))).await),
        "rename" => outcome(
            client
                .rename(proto::RenameRequest {
                    parent: proj,
                    name: mine("r").into_bytes().into(),
                    new_parent: proj,
                    new_name: mine("moved").into_bytes().into(),
                    ..Default::default()
                })
                .await,
        ),
        "remove" => outcome(
            client
                .remove(proto::RemoveRequest {
                    parent: proj,
                    name: mine("x").into_bytes().into(),
                    ..Default::default()
                })
                .await,
        ),
        "setattr" => outcome(
            client
                .set_attr(proto::SetAttrRequest {
                    id: doc,
                    mode: Some(0o640),
                    ..Default::default()
                })
                .await,
        ),
        "set_xattr" => outcome(
            client
                .set_xattr(doc, mine("user.k").as_bytes(), b"v", 0)
                .await,
        ),
        "get_xattr" => outcome(client.get_xattr(doc, b"user.tag").await),
        "list_xattr" => outcome(client.list_xattr(doc).await),
        "remove_xattr" => outcome(client.remove_xattr(doc, mine("user.rm").as_bytes()).await),
        "have_chunks" => {
            let id = loft_remote::content::ChunkId::from_slice(&f.manifest.chunks[0].id).unwrap();
            match client.have_chunks(&[id]).await {
                Ok(present) if present == [true] => Outcome::Allowed,
                Ok(_) => N,
                Err(e) => Denied(e.kind),
            }
        }
        "put_chunks" => outcome(upload(client, format!("bytes of {who}").as_bytes()).await),
        "get_chunks" => outcome(read_chunks(client, &f.manifest).await),
        "get_manifest" => outcome(client.get_manifest(doc, 0).await),
        "commit" => {
            let manifest = upload(client, format!("commit of {who}").as_bytes())
                .await
                .unwrap();
            outcome(client.commit(commit_new(proj, &mine("c"), &manifest)).await)
        }
        "list_versions" => outcome(client.list_versions(doc).await),
        "watch" => outcome(client.watch(f.proj.namespace, 0).await),
        "share" => outcome(client.share(share(proj, "pat", Role::Viewer)).await),
        "list_shares" => outcome(client.list_shares(proj).await),
        "revoke_share" => outcome(client.revoke_share(proj, "quinn").await),
        "comment" => outcome(client.add_comment(doc, &format!("a note from {who}")).await),
        "list_comments" => outcome(client.list_comments(doc).await),
        // Search never fails on what it may not show: "denied" is the file not found.
        "search" => match client.search("hello shared world", 0).await {
            Ok(hits) if hits.iter().any(|hit| hit.node == doc) => Outcome::Allowed,
            Ok(_) => N,
            Err(e) => Denied(e.kind),
        },
        other => panic!("no operation {other} in the matrix runner"),
    }
}

async fn permission_matrix(kind: Kind) {
    let world = World::start(kind).await;
    let (owner, session) = world.user("alice").await;
    let mut clients = BTreeMap::new();
    for (who, name) in [
        ("editor", "eddie"),
        ("commenter", "cora"),
        ("viewer", "vic"),
        ("stranger", "sam"),
        ("revoked", "rex"),
    ] {
        clients.insert(who, world.user(name).await.0);
    }
    for name in ["pat", "quinn"] {
        world.user(name).await;
    }
    // The owner's folder: a file with content and an xattr, and per-caller entries to
    // rename and remove and xattrs to remove, so that one caller's success does not
    // change what the next one finds.
    let proj = owner.create(dir(session.root, "proj")).await.unwrap();
    let content = upload(&owner, b"hello, shared world").await.unwrap();
    let doc = owner
        .commit(commit_new(proj.id, "doc.txt", &content))
        .await
        .unwrap()
        .node
        .unwrap();
    owner.set_xattr(doc.id, b"user.tag", b"t", 0).await.unwrap();
    for who in WHO {
        owner
            .create(file(proj.id, &format!("r-{who}")))
            .await
            .unwrap();
        owner
            .create(file(proj.id, &format!("x-{who}")))
            .await
            .unwrap();
        owner
            .set_xattr(doc.id, format!("user.rm-{who}").as_bytes(), b"1", 0)
            .await
            .unwrap();
    }
    for (name, role) in [
        ("eddie", Role::Editor),
        ("cora", Role::Commenter),
        ("vic", Role::Viewer),
        ("rex", Role::Editor),
        ("quinn", Role::Viewer),
    ] {
        owner.share(share(proj.id, name, role)).await.unwrap();
    }
    let revoked = owner.revoke_share(proj.id, "rex").await.unwrap();
    assert_eq!(revoked, ["rex"]);
    let proj = owner.stat(proj.id).await.unwrap();
    assert_ne!(
        proj.namespace, session.namespace,
        "a shared folder is a namespace"
    );
    let f = Fixture {
        manifest: owner.get_manifest(doc.id, 0).await.unwrap(),
        proj,
        doc,
    };
    clients.insert("owner", owner);

    let mut wrong = Vec::new();
    for (op, expected) in MATRIX {
        for (column, who) in WHO.iter().enumerate() {
            let got = run(op, who, &clients[who], &f).await;
            if got != expected[column] {
                wrong.push(format!(
                    "{op} as {who}: expected {:?}, got {got:?}",
                    expected[column]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "permission matrix:\n{}", wrong.join("\n"));
}

async fn a_reshare_never_grants_more_than_the_sharer_holds(kind: Kind) {
    let world = World::start(kind).await;
    let (alice, session) = world.user("alice").await;
    let (eddie, _) = world.user("eddie").await;
    let (vic, _) = world.user("vic").await;
    let (olivia, _) = world.user("olivia").await;
    let (carl, _) = world.user("carl").await;
    world.user("pat").await;
    let proj = alice.create(dir(session.root, "proj")).await.unwrap();
    alice
        .share(share(proj.id, "eddie", Role::Editor))
        .await
        .unwrap();
    alice
        .share(share(proj.id, "vic", Role::Viewer))
        .await
        .unwrap();
    alice
        .share(share(proj.id, "olivia", Role::Owner))
        .await
        .unwrap();

    // Below owner, nobody shares, at any role, nor raises its own role.
    for role in [Role::Owner, Role::Editor, Role::Viewer] {
        for (client, who) in [(&eddie, "eddie"), (&vic, "vic")] {
            let error = client.share(share(proj.id, "pat", role)).await.unwrap_err();
            assert_eq!(error.kind, ErrorKind::PermissionDenied, "{who} as {role:?}");
        }
    }
    let error = vic
        .share(share(proj.id, "vic", Role::Editor))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);
    let error = eddie
        .share(share(proj.id, "eddie", Role::Owner))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);

    // A co-owner re-shares; the editor it made still cannot.
    olivia
        .share(share(proj.id, "carl", Role::Editor))
        .await
        .unwrap();
    let error = carl
        .share(share(proj.id, "pat", Role::Viewer))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);
    // Nor can a co-owner change the owner's role, or an editor revoke anyone else.
    let error = olivia
        .share(share(proj.id, "alice", Role::Viewer))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::FailedPrecondition);
    let error = eddie.revoke_share(proj.id, "vic").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);

    let roles: BTreeMap<String, i32> = alice
        .list_shares(proj.id)
        .await
        .unwrap()
        .members
        .into_iter()
        .map(|m| (m.user, m.role))
        .collect();
    let expected: BTreeMap<String, i32> = [
        ("alice", Role::Owner),
        ("carl", Role::Editor),
        ("eddie", Role::Editor),
        ("olivia", Role::Owner),
        ("vic", Role::Viewer),
    ]
    .into_iter()
    .map(|(u, r)| (u.to_string(), r as i32))
    .collect();
    assert_eq!(
        roles, expected,
        "nothing changed but olivia's share to carl"
    );
}

async fn a_revoke_cascades_to_the_reshares_of_the_revoked(kind: Kind) {
    let world = World::start(kind).await;
    let (alice, session) = world.user("alice").await;
    let (olivia, _) = world.user("olivia").await;
    let (dan, _) = world.user("dan").await;
    let (carl, _) = world.user("carl").await;
    let (erin, _) = world.user("erin").await;
    let (frank, _) = world.user("frank").await;
    let proj = alice.create(dir(session.root, "proj")).await.unwrap();
    alice
        .share(share(proj.id, "olivia", Role::Owner))
        .await
        .unwrap();
    alice
        .share(share(proj.id, "frank", Role::Viewer))
        .await
        .unwrap();
    olivia
        .share(share(proj.id, "carl", Role::Editor))
        .await
        .unwrap();
    olivia
        .share(share(proj.id, "dan", Role::Owner))
        .await
        .unwrap();
    dan.share(share(proj.id, "erin", Role::Viewer))
        .await
        .unwrap();
    for client in [&olivia, &dan, &carl, &erin, &frank] {
        client.resolve(b"/proj").await.unwrap();
    }

    // Only an owner of the item removes others; nobody removes its owner.
    let error = carl.revoke_share(proj.id, "erin").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);
    let error = olivia.revoke_share(proj.id, "alice").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::FailedPrecondition);

    let mut revoked = alice.revoke_share(proj.id, "olivia").await.unwrap();
    revoked.sort();
    assert_eq!(revoked, ["carl", "dan", "erin", "olivia"]);
    for client in [&olivia, &dan, &carl, &erin] {
        let error = client.resolve(b"/proj").await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::NotFound);
        let error = client.stat(proj.id).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::NotFound);
        let root = client.resolve(b"/").await.unwrap();
        let listing = client.list(root.id, b"", 0).await.unwrap();
        assert!(listing.entries.is_empty(), "nothing left at the root");
    }
    frank.resolve(b"/proj").await.unwrap();
    let members: Vec<String> = alice
        .list_shares(proj.id)
        .await
        .unwrap()
        .members
        .into_iter()
        .map(|m| m.user)
        .collect();
    assert_eq!(members, ["alice", "frank"]);

    // A member may leave by itself; revoking someone who is not a member is NOT_FOUND.
    assert_eq!(
        frank.revoke_share(proj.id, "frank").await.unwrap(),
        ["frank"]
    );
    let error = alice.revoke_share(proj.id, "frank").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound);
}

async fn revoking_ends_the_revoked_users_watch_at_once(kind: Kind) {
    let world = World::start(kind).await;
    let (alice, session) = world.user("alice").await;
    let (bob, _) = world.user("bob").await;
    let proj = alice.create(dir(session.root, "proj")).await.unwrap();
    alice
        .share(share(proj.id, "bob", Role::Editor))
        .await
        .unwrap();

    // Bob's feed covers the shared folder: a change there reaches his stream.
    let mut events = bob.watch(0, 0).await.unwrap();
    let before = until_caught_up(&mut events).await;
    assert!(
        before
            .iter()
            .any(|c| c.name.as_ref() == b"proj" && c.kind == proto::ChangeKind::Created as i32),
        "bob's feed has the shared folder's entry at his root"
    );
    let cursor = before.last().map(|c| c.seq).unwrap_or(0);
    alice.create(file(proj.id, "live.txt")).await.unwrap();
    let live = until_caught_up(&mut events).await;
    assert!(live.iter().any(|c| c.name.as_ref() == b"live.txt"));

    alice.revoke_share(proj.id, "bob").await.unwrap();
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = events.next().await {
            if let Err(error) = event {
                return Some(error.kind);
            }
        }
        None
    })
    .await
    .expect("the revoked user's Watch stream did not end");
    assert_eq!(ended, Some(ErrorKind::PermissionDenied));

    // Watching again: the folder's entry is removed, and what happens in it after the
    // revoke never reaches bob.
    alice.create(file(proj.id, "secret.txt")).await.unwrap();
    let mut events = bob.watch(0, cursor).await.unwrap();
    let after = until_caught_up(&mut events).await;
    assert!(
        after
            .iter()
            .any(|c| c.name.as_ref() == b"proj" && c.kind == proto::ChangeKind::Removed as i32)
    );
    assert!(!after.iter().any(|c| c.name.as_ref() == b"secret.txt"));
    let shared_ns = alice.stat(proj.id).await.unwrap().namespace;
    let error = bob.watch(shared_ns, 0).await.err();
    assert_eq!(error.map(|e| e.kind), Some(ErrorKind::NotFound));
}

async fn shared_items_appear_at_the_root_with_a_suffix_when_taken(kind: Kind) {
    let world = World::start(kind).await;
    let (alice, session) = world.user("alice").await;
    let (bob, bob_session) = world.user("bob").await;
    bob.create(dir(bob_session.root, "proj")).await.unwrap();
    let proj = alice.create(dir(session.root, "proj")).await.unwrap();
    let sub = alice.create(dir(proj.id, "sub")).await.unwrap();
    let reply = alice
        .share(share(proj.id, "bob", Role::Editor))
        .await
        .unwrap();
    assert_eq!(reply.name.as_ref(), b"proj (2)");

    // Paths inside it address the shared folder, both ways.
    let seen = bob.resolve(b"/proj (2)/sub").await.unwrap();
    assert_eq!(seen.id, sub.id);
    bob.create(file(sub.id, "from-bob")).await.unwrap();
    alice.resolve(b"/proj/sub/from-bob").await.unwrap();
    let names: Vec<Vec<u8>> = bob
        .list(bob_session.root, b"", 0)
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.name.to_vec())
        .collect();
    assert_eq!(names, [b"proj".to_vec(), b"proj (2)".to_vec()]);

    // A file can be shared too; a viewer reads it and cannot write it.
    let content = upload(&alice, b"read me").await.unwrap();
    let notes = alice
        .commit(commit_new(session.root, "notes.txt", &content))
        .await
        .unwrap()
        .node
        .unwrap();
    let reply = alice
        .share(share(notes.id, "bob", Role::Viewer))
        .await
        .unwrap();
    assert_eq!(reply.name.as_ref(), b"notes.txt");
    let seen = bob.resolve(b"/notes.txt").await.unwrap();
    let manifest = bob.get_manifest(seen.id, 0).await.unwrap();
    assert_eq!(read_chunks(&bob, &manifest).await.unwrap(), b"read me");
    let mine = upload(&bob, b"overwritten").await.unwrap();
    let error = bob
        .commit(proto::CommitRequest {
            node: seen.id,
            base_version: seen.version,
            manifest: Some((&mine).into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);

    // The session lists the memberships, with roles.
    let me = bob.who_am_i().await.unwrap();
    let mut roles: Vec<i32> = me.memberships.iter().map(|m| m.role).collect();
    roles.sort();
    assert_eq!(
        roles,
        [Role::Viewer as i32, Role::Editor as i32, Role::Owner as i32]
    );

    // A member deleting its entry leaves the share; the owner keeps the folder.
    bob.remove(proto::RemoveRequest {
        parent: bob_session.root,
        name: b"proj (2)".to_vec().into(),
        recursive: true,
        ..Default::default()
    })
    .await
    .unwrap();
    alice.resolve(b"/proj/sub/from-bob").await.unwrap();
    assert_eq!(
        bob.stat(proj.id).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
}

async fn bad_share_requests_are_refused_and_change_nothing(kind: Kind) {
    let world = World::start(kind).await;
    let (alice, session) = world.user("alice").await;
    world.user("bob").await;
    let proj = alice.create(dir(session.root, "proj")).await.unwrap();
    let sub = alice.create(dir(proj.id, "sub")).await.unwrap();
    let link = alice
        .create(proto::CreateRequest {
            kind: NodeKind::Symlink as i32,
            symlink_target: b"proj".to_vec().into(),
            ..file(session.root, "link")
        })
        .await
        .unwrap();
    let kind_of = |r: RemoteResult<proto::ShareReply>| r.unwrap_err().kind;

    assert_eq!(
        kind_of(alice.share(share(proj.id, "nobody", Role::Viewer)).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(alice.share(share(proj.id, "alice", Role::Viewer)).await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(alice.share(share(proj.id, "bob", Role::Unspecified)).await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(alice.share(share(session.root, "bob", Role::Viewer)).await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(alice.share(share(link.id, "bob", Role::Viewer)).await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(alice.share(share(999_999, "bob", Role::Viewer)).await),
        ErrorKind::NotFound
    );
    // None of that shared anything.
    assert_eq!(alice.list_shares(proj.id).await.unwrap().namespace, 0);
    assert_eq!(
        alice.stat(proj.id).await.unwrap().namespace,
        session.namespace
    );

    // Inside a shared folder, only the folder itself is shared again.
    alice
        .share(share(proj.id, "bob", Role::Viewer))
        .await
        .unwrap();
    assert_eq!(
        kind_of(alice.share(share(sub.id, "bob", Role::Editor)).await),
        ErrorKind::FailedPrecondition
    );
    assert_eq!(
        alice.revoke_share(sub.id, "bob").await.unwrap_err().kind,
        ErrorKind::FailedPrecondition
    );

    // Comments: empty or too long is refused; nothing is stored.
    for text in ["", "   ", &"x".repeat(5000)] {
        let error = alice.add_comment(proj.id, text).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidArgument);
    }
    assert!(alice.list_comments(proj.id).await.unwrap().is_empty());
    let comment = alice.add_comment(proj.id, "  looks good ").await.unwrap();
    assert_eq!(comment.text, "looks good");
    assert_eq!(comment.user, "alice");
}

on_both_backends!(
    permission_matrix,
    a_reshare_never_grants_more_than_the_sharer_holds,
    a_revoke_cascades_to_the_reshares_of_the_revoked,
    revoking_ends_the_revoked_users_watch_at_once,
    shared_items_appear_at_the_root_with_a_suffix_when_taken,
    bad_share_requests_are_refused_and_change_nothing,
);
