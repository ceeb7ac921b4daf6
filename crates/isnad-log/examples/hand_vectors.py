"""Writes spec/vectors/audit-log/{merkle-rfc6962,signed-note,tiles}.json.

The data in these files comes from other implementations (RFC 6962 / CT
test data, the Go sumdb/note package and the Go checksum database) and is
copied here as data; the roots are cross-checked with Python's hashlib.
Run: python3 crates/isnad-log/examples/hand_vectors.py
"""
import json, hashlib, os
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../spec/vectors/audit-log/")
leaves = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
roots = [
 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
 "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
 "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
 "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
 "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
 "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
 "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
 "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
 "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
# Sanity cross-check of the published roots with Python's hashlib (independent SHA-256).
def lh(d): return hashlib.sha256(b"\x00"+bytes.fromhex(d)).digest()
def mth(ls):
    if len(ls)==0: return hashlib.sha256(b"").digest()
    if len(ls)==1: return ls[0]
    k=1
    while k*2 < len(ls): k*=2
    return hashlib.sha256(b"\x01"+mth(ls[:k])+mth(ls[k:])).digest()
for n in range(9): assert mth([lh(d) for d in leaves[:n]]).hex()==roots[n], n

inc = [
 (0,8,["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7","5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e","6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
 (5,8,["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b","ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0","d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
con = [
 (2,8,["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e","6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
 (6,8,["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a","ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0","d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
 (2,5,["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e","bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
def flip(h): return h[:10]+("0" if h[10]!="0" else "1")+h[11:]
icases=[]
for (i,n,p) in inc:
    base={"leaf":leaves[i],"index":i,"size":n,"proof":p,"root":roots[n]}
    icases.append(dict(name=f"ct-{i}-of-{n}",valid=True,**base))
    icases.append(dict(base,name=f"ct-{i}-of-{n}-wrong-index",index=i^1,valid=False))
    icases.append(dict(base,name=f"ct-{i}-of-{n}-wrong-leaf",leaf=leaves[(i+1)%8],valid=False))
    icases.append(dict(base,name=f"ct-{i}-of-{n}-flipped-bit",proof=[flip(p[0])]+p[1:],valid=False))
    icases.append(dict(base,name=f"ct-{i}-of-{n}-truncated",proof=p[:-1],valid=False))
    icases.append(dict(base,name=f"ct-{i}-of-{n}-extra-hash",proof=p+[roots[n]],valid=False))
    icases.append(dict(base,name=f"ct-{i}-of-{n}-short-hash",proof=[p[0][:62]]+p[1:],valid=False))
    icases.append(dict(base,name=f"ct-{i}-of-{n}-index-equals-size",index=n,valid=False))
    icases.append(dict(base,name=f"ct-{i}-of-{n}-wrong-root",root=roots[n-1],valid=False))
icases.append({"name":"single-leaf-tree","leaf":leaves[0],"index":0,"size":1,"proof":[],"root":roots[1],"valid":True})
ccases=[]
for (m,n,p) in con:
    base={"first":m,"second":n,"first_root":roots[m],"second_root":roots[n],"proof":p}
    ccases.append(dict(name=f"ct-{m}-to-{n}",valid=True,**base))
    ccases.append(dict(base,name=f"ct-{m}-to-{n}-flipped-bit",proof=p[:-1]+[flip(p[-1])],valid=False))
    ccases.append(dict(base,name=f"ct-{m}-to-{n}-truncated",proof=p[:-1],valid=False))
    ccases.append(dict(base,name=f"ct-{m}-to-{n}-extra-hash",proof=p+[roots[n]],valid=False))
    ccases.append(dict(base,name=f"ct-{m}-to-{n}-short-hash",proof=[p[0][:62]]+p[1:],valid=False))
    ccases.append(dict(base,name=f"ct-{m}-to-{n}-wrong-first-root",first_root=roots[m+1],valid=False))
    ccases.append(dict(base,name=f"ct-{m}-to-{n}-empty-proof",proof=[],valid=False))
    ccases.append(dict(base,name=f"ct-{m}-to-{n}-sizes-swapped",first=n,second=m,first_root=roots[n],second_root=roots[m],valid=False))
ccases += [
 {"name":"equal-sizes-equal-roots","first":4,"second":4,"first_root":roots[4],"second_root":roots[4],"proof":[],"valid":True},
 {"name":"equal-sizes-different-roots","first":4,"second":4,"first_root":roots[4],"second_root":roots[5],"proof":[],"valid":False},
 {"name":"equal-sizes-non-empty-proof","first":4,"second":4,"first_root":roots[4],"second_root":roots[4],"proof":[roots[4]],"valid":False},
 {"name":"from-empty-tree","first":0,"second":8,"first_root":roots[0],"second_root":roots[8],"proof":[],"valid":True},
 {"name":"from-size-0-with-wrong-root","first":0,"second":8,"first_root":roots[1],"second_root":roots[8],"proof":[],"valid":False},
 {"name":"from-size-0-non-empty-proof","first":0,"second":8,"first_root":roots[0],"second_root":roots[8],"proof":[roots[0]],"valid":False},
]
json.dump({"type":"merkle",
 "description":"RFC 6962 / RFC 9162 test sequence used by Certificate Transparency implementations (google/certificate-transparency, transparency-dev/merkle). roots[n] is the root of the first n leaves (leaf data in hex). Inclusion and consistency proofs from the same sources, with named negative cases; 'proof' hashes in hex, a hash that is not 32 bytes makes the case invalid.",
 "leaves":leaves,"roots":roots,"inclusion":icases,"consistency":ccases}, open(out+"merkle-rfc6962.json","w"), indent=2)

go_text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
pn = "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
er = "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
pn_v = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
er_v = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
note1 = go_text+"\n"+pn
note2 = go_text+"\n"+pn+er
# Signed tree heads served by the production Go checksum database (the Go
# sumdb server, another C2SP signed-note implementation), as published in
# public test code, with its well-known verifier key.
GO_SUMDB_KEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
GO_SUMDB_1 = "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n\u2014 sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3YI8oW9/C8DJ87F61QqspBYwM=\n"
GO_SUMDB_2 = "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n\u2014 sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n"
cases = [
 {"name":"go-example-open","note":note1,"keys":[pn_v],"valid":True,"text":go_text,"verified":["PeterNeumann"]},
 {"name":"go-example-two-signatures","note":note2,"keys":[pn_v,er_v],"valid":True,"text":go_text,"verified":["PeterNeumann","EnochRoot"]},
 {"name":"go-example-unknown-second-key-ignored","note":note2,"keys":[pn_v],"valid":True,"text":go_text,"verified":["PeterNeumann"]},
 {"name":"go-example-second-key-only","note":note2,"keys":[er_v],"valid":True,"text":go_text,"verified":["EnochRoot"]},
 {"name":"sum.golang.org-checkpoint-31700353","note":GO_SUMDB_1,"keys":[GO_SUMDB_KEY],"valid":True,"text":GO_SUMDB_1.split("\n\n")[0]+"\n","verified":["sum.golang.org"]},
 {"name":"sum.golang.org-checkpoint-65209736","note":GO_SUMDB_2,"keys":[GO_SUMDB_KEY],"valid":True,"text":GO_SUMDB_2.split("\n\n")[0]+"\n","verified":["sum.golang.org"]},
 {"name":"sum.golang.org-checkpoint-size-changed","note":GO_SUMDB_2.replace("65209736","65209737"),"keys":[GO_SUMDB_KEY],"valid":False},
 {"name":"no-known-key","note":note1,"keys":[er_v],"valid":False},
 {"name":"tampered-text","note":note1.replace("answer","Answer"),"keys":[pn_v],"valid":False},
 {"name":"duplicate-known-signature","note":go_text+"\n"+pn+pn,"keys":[pn_v],"valid":False},
 {"name":"hyphen-instead-of-em-dash","note":note1.replace("\u2014","-"),"keys":[pn_v],"valid":False},
 {"name":"no-blank-line","note":go_text+pn,"keys":[pn_v],"valid":False},
 {"name":"missing-final-newline","note":note1[:-1],"keys":[pn_v],"valid":False},
 {"name":"control-character","note":note1.replace("answer","ans\u0007wer"),"keys":[pn_v],"valid":False},
 {"name":"carriage-return","note":note1.replace("\n","\r\n",1),"keys":[pn_v],"valid":False},
 {"name":"signature-not-base64","note":go_text+"\n\u2014 PeterNeumann x08go/ZJkuBS9UG!\n","keys":[pn_v],"valid":False},
 {"name":"signature-too-short","note":go_text+"\n\u2014 PeterNeumann x08goA==\n","keys":[pn_v],"valid":False},
 {"name":"signature-bit-flipped","note":note1.replace("x08go/ZJ","x08go/ZK"),"keys":[pn_v],"valid":False},
 {"name":"too-many-signatures","note":note1+"\u2014 Other AAAAAAA=\n"*100,"keys":[pn_v],"valid":False},
 {"name":"key-name-with-plus-in-signature","note":go_text+"\n\u2014 Peter+Neumann AAAAAAA=\n"+pn,"keys":[pn_v],"valid":False},
]
keys = [
 {"name":"go-signer-key","signer":"PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz","verifier":pn_v,"sign_text":go_text,"signed_note":note1,"valid":True},
 {"name":"go-zero-seed-key","signer":"PRIVATE+KEY+EnochRoot+af0cfe78+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","verifier":er_v,"sign_text":go_text,"signed_note":go_text+"\n"+er,"valid":True},
 {"name":"verifier-wrong-key-id","verifier":"PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW","valid":False},
 {"name":"verifier-unknown-type","verifier":"PeterNeumann+c74f20a3+AhqZ2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW","valid":False},
 {"name":"verifier-short-key","verifier":"PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10Q=","valid":False},
 {"name":"verifier-name-with-space","verifier":"Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW","valid":False},
 {"name":"verifier-short-key-id","verifier":"PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW","valid":False},
]
json.dump({"type":"signed-note",
 "description":"C2SP signed-note. The sum.golang.org notes are signed tree heads of the production Go checksum database with its published verifier key. The PeterNeumann and EnochRoot notes and keys are the examples of the Go reference implementation, golang.org/x/mod/sumdb/note (example_test.go); EnochRoot's key there is generated from an all-zero random stream (seed = 32 zero bytes). 'keys' are the trusted verifier keys; valid notes yield 'text' and signatures verified by 'verified'. Ed25519 signing is deterministic, so signing 'sign_text' with 'signer' must give 'signed_note' byte for byte.",
 "notes":cases,"keys":keys}, open(out+"signed-note.json","w"), indent=2, ensure_ascii=False)

json.dump({"type":"tiles",
 "description":"C2SP tlog-tiles paths (height 8, width 256) and which tiles a tree of a given size has: [level, index, width].",
 "paths":[
  {"kind":"tile","level":0,"index":0,"width":256,"path":"tile/0/000"},
  {"kind":"tile","level":0,"index":1234067,"width":256,"path":"tile/0/x001/x234/067"},
  {"kind":"tile","level":1,"index":0,"width":44,"path":"tile/1/000.p/44"},
  {"kind":"tile","level":2,"index":1000,"width":1,"path":"tile/2/x001/000.p/1"},
  {"kind":"entries","level":0,"index":5,"width":256,"path":"tile/entries/005"},
  {"kind":"entries","level":0,"index":999,"width":255,"path":"tile/entries/999.p/255"}],
 "tiles_for":[
  {"size":0,"tiles":[]},
  {"size":1,"tiles":[[0,0,1]]},
  {"size":256,"tiles":[[0,0,256],[1,0,1]]},
  {"size":300,"tiles":[[0,0,256],[0,1,44],[1,0,1]]},
  {"size":513,"tiles":[[0,0,256],[0,1,256],[0,2,1],[1,0,2]]},
  {"size":65536,"count":258,"last":[2,0,1]}]},
 open(out+"tiles.json","w"), indent=2)
print("ok")
