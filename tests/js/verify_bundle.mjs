// Independent verifier for the provenance tests: sigstore-js (@sigstore/verify), fully offline.
//
//   node verify_bundle.mjs keyless BUNDLE TRUSTED_ROOT_JSON SAN ISSUER ARTIFACT
//   node verify_bundle.mjs key     BUNDLE PUBLIC_KEY_PEM ARTIFACT
//
// Checks the signature (and for keyless: certificate chain, SCT, tlog, identity), then that the
// artifact's sha256 is a subject of the signed in-toto statement. Exit 0 and "OK ..." on success.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';

const [mode, bundlePath, ...rest] = process.argv.slice(2);
try {
  const raw = JSON.parse(fs.readFileSync(bundlePath, 'utf8'));
  const bundle = bundleFromJSON(raw);
  let artifactPath;
  if (mode === 'keyless') {
    const [rootPath, san, issuer, artifact] = rest;
    artifactPath = artifact;
    const root = TrustedRoot.fromJSON(JSON.parse(fs.readFileSync(rootPath, 'utf8')));
    const verifier = new Verifier(toTrustMaterial(root), { tlogThreshold: 1, ctlogThreshold: 1 });
    verifier.verify(toSignedEntity(bundle), { subjectAlternativeName: san, extensions: { issuer } });
  } else if (mode === 'key') {
    const [pubPath, artifact] = rest;
    artifactPath = artifact;
    const der = crypto.createPublicKey(fs.readFileSync(pubPath)).export({ type: 'spki', format: 'der' });
    const emptyRoot = {
      mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
      tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [],
    };
    const hint = raw.verificationMaterial.publicKey.hint;
    const keys = { [hint]: { rawBytes: der, keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start: new Date(0) } } };
    const verifier = new Verifier(toTrustMaterial(emptyRoot, keys), { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
    verifier.verify(toSignedEntity(bundle));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  const statement = JSON.parse(Buffer.from(bundle.content.dsseEnvelope.payload).toString());
  const digest = crypto.createHash('sha256').update(fs.readFileSync(artifactPath)).digest('hex');
  if (!statement.subject.some((s) => s.digest && s.digest.sha256 === digest)) {
    throw new Error(`artifact digest ${digest} is not a subject`);
  }
  console.log('OK', statement.predicateType, digest);
} catch (err) {
  console.error('FAIL', err && err.message ? err.message : String(err));
  process.exit(1);
}
