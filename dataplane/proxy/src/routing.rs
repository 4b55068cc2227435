//! The HTTP/1.1 request head as the route table sees it: a
//! [`ringmesh_route::Request`] that borrows the parsed head's spans, so
//! route matching (paths, header and query conditions) reads the bytes in
//! the connection's read buffer and copies nothing.

use ringmesh_http1::RequestHead;
use ringmesh_route::{HeaderSource, Request};

/// The header lines of a parsed head, by position.
pub struct HeadHeaders<'a> {
    buf: &'a [u8],
    head: &'a RequestHead,
}

impl<'a> HeadHeaders<'a> {
    pub fn new(buf: &'a [u8], head: &'a RequestHead) -> HeadHeaders<'a> {
        HeadHeaders { buf, head }
    }
}

impl HeaderSource for HeadHeaders<'_> {
    fn header_count(&self) -> usize {
        self.head.headers.len()
    }

    fn header_at(&self, i: usize) -> (&[u8], &[u8]) {
        let h = &self.head.headers[i];
        (h.name.get(self.buf), h.value.get(self.buf))
    }
}

/// The query (after `?`, possibly empty) of `head`, `None` without a `?`.
pub fn query_of<'a>(buf: &'a [u8], head: &RequestHead) -> Option<&'a [u8]> {
    let query = head.query;
    let has_query = query.start > 0 && buf.get(query.start as usize - 1) == Some(&b'?');
    has_query.then(|| query.get(buf))
}

/// The route-matching view of `head` (parsed from `buf`) received on a
/// listener speaking `scheme`.
pub fn request_view<'a>(
    buf: &'a [u8],
    head: &'a RequestHead,
    headers: &'a HeadHeaders<'a>,
    scheme: &'a [u8],
) -> Request<'a> {
    let (path, query) = (head.path, head.query);
    // The codec leaves the query span right after the `?` when there is
    // one (possibly empty), and at the end of the target otherwise.
    let has_query = query.start > 0 && buf.get(query.start as usize - 1) == Some(&b'?');
    let path_and_query = if !has_query {
        Some(path.get(buf))
    } else if query.start == path.end + 1 {
        // Origin-form (and absolute-form with a path): `/p?q` is one slice.
        Some(&buf[path.start as usize..query.end as usize])
    } else {
        // Absolute-form without a path (`http://h?q`): the path "/" is
        // not next to the query; `:path` is composed when asked for.
        None
    };
    Request {
        method: head.method_span.get(buf),
        scheme,
        authority: head.authority.get(buf),
        path: path.get(buf),
        query: has_query.then(|| query.get(buf)),
        path_and_query,
        headers,
    }
}

#[cfg(test)]
mod tests {
    use ringmesh_http1::{parse_request, Limits, ParseStatus};
    use ringmesh_route::{
        HeaderMatcher, PathMatch, Route, RouteAction, RouteTable, StringMatch, VirtualHost,
    };

    use super::*;

    fn parsed(raw: &[u8]) -> RequestHead {
        let mut head = RequestHead::default();
        match parse_request(raw, &Limits::default(), &mut head) {
            Ok(ParseStatus::Complete(_)) => head,
            other => panic!("{other:?}"),
        }
    }

    /// `(method, authority, path, query, :path)` as the view reads them.
    fn view(raw: &[u8]) -> (String, String, String, Option<String>, String) {
        let head = parsed(raw);
        let headers = HeadHeaders::new(raw, &head);
        let r = request_view(raw, &head, &headers, b"http");
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        // `:path` through a matcher, since the view may compose it.
        let mut m = Route::new(
            "p",
            PathMatch::Prefix("".into()),
            RouteAction::cluster("c".into(), 0, None),
        );
        m.path = PathMatch::Regex(".*".into());
        let full = ["/", "/a", "/a?", "/a?x=1&y", "/?x=1", "*", "/b/c?"]
            .into_iter()
            .find(|want| {
                m.headers = vec![HeaderMatcher::new(
                    ":path",
                    StringMatch::Exact((*want).into()),
                )];
                let t = RouteTable::build(
                    "t",
                    vec![VirtualHost {
                        name: "v".into(),
                        domains: vec!["*".into()],
                        routes: vec![m.clone()],
                    }],
                )
                .unwrap();
                t.route_request(&r).is_some()
            })
            .unwrap_or("?");
        (
            s(r.method),
            s(r.authority),
            s(r.path),
            r.query.map(s),
            full.to_string(),
        )
    }

    fn owned(
        m: &str,
        a: &str,
        p: &str,
        q: Option<&str>,
        full: &str,
    ) -> (String, String, String, Option<String>, String) {
        (m.into(), a.into(), p.into(), q.map(Into::into), full.into())
    }

    #[test]
    fn views_of_each_target_form() {
        assert_eq!(
            view(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"),
            owned("GET", "h", "/a", None, "/a")
        );
        assert_eq!(
            view(b"PATCH /a? HTTP/1.1\r\nHost: h\r\n\r\n"),
            owned("PATCH", "h", "/a", Some(""), "/a?")
        );
        assert_eq!(
            view(b"GET /a?x=1&y HTTP/1.1\r\nHost: h:8080\r\n\r\n"),
            owned("GET", "h:8080", "/a", Some("x=1&y"), "/a?x=1&y")
        );
        assert_eq!(
            view(b"GET http://abs/b/c? HTTP/1.1\r\nHost: abs\r\n\r\n"),
            owned("GET", "abs", "/b/c", Some(""), "/b/c?")
        );
        assert_eq!(
            view(b"GET http://abs?x=1 HTTP/1.1\r\nHost: abs\r\n\r\n"),
            owned("GET", "abs", "/", Some("x=1"), "/?x=1")
        );
        assert_eq!(
            view(b"GET http://abs HTTP/1.1\r\nHost: abs\r\n\r\n"),
            owned("GET", "abs", "/", None, "/")
        );
        assert_eq!(
            view(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
            owned("OPTIONS", "h", "*", None, "*")
        );
    }

    #[test]
    fn headers_are_read_in_place() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nEnd-User:  jason \r\nx-a: 1\r\nX-A: 2\r\n\r\n";
        let head = parsed(raw);
        let headers = HeadHeaders::new(raw, &head);
        assert_eq!(headers.header_count(), 4);
        assert_eq!(headers.header_at(1), (&b"End-User"[..], &b"jason"[..]));
        let r = request_view(raw, &head, &headers, b"http");
        let mut route = Route::new(
            "multi",
            PathMatch::Prefix("/".into()),
            RouteAction::cluster("c".into(), 0, None),
        );
        route.headers = vec![
            HeaderMatcher::new("x-a", StringMatch::Exact("1,2".into())),
            HeaderMatcher::new("end-user", StringMatch::Exact("jason".into())),
        ];
        let t = RouteTable::build(
            "t",
            vec![VirtualHost {
                name: "v".into(),
                domains: vec!["*".into()],
                routes: vec![route],
            }],
        )
        .unwrap();
        assert_eq!(t.route_request(&r).map(|r| &*r.name), Some("multi"));
    }
}
