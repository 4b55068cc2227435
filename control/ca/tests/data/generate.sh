#!/bin/sh
# Regenerates the openssl-made fixtures used by tests/plugin_openssl.rs:
# an Istio-style plug-in CA with RSA keys in the formats openssl writes
# by default (PKCS#1 "RSA PRIVATE KEY", SEC1 "EC PRIVATE KEY"), and CSRs
# rcgen on ring cannot make (RSA keys, SHA-1 signatures). Valid ~100 years.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/ca.ext" <<'EXT'
[root]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT

# Root: EC P-256, SEC1 key.
openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/root-key.pem"
openssl req -x509 -new -key "$tmp/root-key.pem" -sha256 -days 36500 \
  -subj "/O=Istio/CN=Root CA" -extensions root -config "$tmp/ca.ext" \
  -out openssl-root-cert.pem 2>/dev/null || \
openssl req -x509 -new -key "$tmp/root-key.pem" -sha256 -days 36500 \
  -subj "/O=Istio/CN=Root CA" -addext "basicConstraints=critical,CA:true" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -out openssl-root-cert.pem

# Intermediate: RSA 2048, PKCS#1 key, signed by the root.
openssl genrsa -traditional -out openssl-ca-key.pem 2048 2>/dev/null
openssl req -new -key openssl-ca-key.pem -subj "/O=Istio/CN=Intermediate CA" -out "$tmp/ca.csr"
openssl x509 -req -in "$tmp/ca.csr" -CA openssl-root-cert.pem -CAkey "$tmp/root-key.pem" \
  -set_serial 0x1c3e5a7f9b2d4e6f -sha256 -days 36500 -extfile "$tmp/ca.ext" -extensions intermediate \
  -out openssl-ca-cert.pem 2>/dev/null
cat openssl-ca-cert.pem openssl-root-cert.pem > openssl-cert-chain.pem

# CSRs: RSA 2048 SHA-256 (accepted), RSA 1024 (too small), RSA 2048 SHA-1 (weak).
openssl genrsa -out "$tmp/rsa2048.pem" 2048 2>/dev/null
openssl req -new -key "$tmp/rsa2048.pem" -sha256 -subj "/" -out csr-rsa2048.pem
openssl req -new -key "$tmp/rsa2048.pem" -sha1 -subj "/" -out csr-rsa2048-sha1.pem
openssl genrsa -out "$tmp/rsa1024.pem" 1024 2>/dev/null
openssl req -new -key "$tmp/rsa1024.pem" -sha256 -subj "/" -out csr-rsa1024.pem
