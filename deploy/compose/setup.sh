#!/bin/sh
# One-shot set-up of the compose federation (idempotent: does nothing if the
# nodes already exist). In production the root keys never sit next to the
# nodes: each country signs its directory offline and ships only the signed
# file and the root's public key.
#
# The named volumes mounted at $ROOTS and $NODES/* do not exist in the image,
# so the engine creates them owned by root: compose runs this script as root
# with ISNAD_UID=10001 (the image's isnad user); it hands the volumes to that
# user and re-runs itself as that user, so every file is the node's own.
set -eu
# ISNAD_ROOTS, ISNAD_NODES and ISNAD_ENDPOINT_* (the address partners reach
# a node at; the service name inside the compose network) are for running
# this script outside a container, as tests/deploy.rs does.
ROOTS=${ISNAD_ROOTS:-/roots}
NODES=${ISNAD_NODES:-/nodes}
if [ "$(id -u)" = 0 ] && [ -n "${ISNAD_UID:-}" ]; then
  chown "$ISNAD_UID:$ISNAD_UID" "$ROOTS" "$NODES"/iq-moi "$NODES"/iq-moj "$NODES"/fr-mj
  exec setpriv --reuid="$ISNAD_UID" --regid="$ISNAD_UID" --clear-groups /bin/sh "$0" "$@"
fi
if [ -f "$NODES"/iq-moi/config.toml ]; then
  echo "federation already set up"; exit 0
fi
cd "$ROOTS"
isnad directory root-init --country IQ --out iq-root
isnad directory root-init --country FR --out fr-root
isnad init --dir "$NODES"/iq-moi --agency iq.moi.ahtd --country IQ --listen 0.0.0.0:7401
isnad init --dir "$NODES"/iq-moj --agency iq.moj.ca --country IQ --listen 0.0.0.0:7401
isnad init --dir "$NODES"/fr-mj --agency fr.mj.bepi --country FR --listen 0.0.0.0:7401
isnad directory add-node --draft iq.json --node "$NODES"/iq-moi --role law-enforcement --endpoint "${ISNAD_ENDPOINT_IQ_MOI:-iq-moi:7401}" \
  --name "ar=مديرية مكافحة الاتجار بالبشر" --name "en=Anti-Trafficking Directorate"
isnad directory add-node --draft iq.json --node "$NODES"/iq-moj --role central-authority --endpoint "${ISNAD_ENDPOINT_IQ_MOJ:-iq-moj:7401}" \
  --name "ar=وزارة العدل" --name "en=Ministry of Justice"
isnad directory add-node --draft fr.json --node "$NODES"/fr-mj --role central-authority --endpoint "${ISNAD_ENDPOINT_FR_MJ:-fr-mj:7401}" \
  --name "fr=Ministère de la Justice" --name "en=Ministry of Justice"
isnad directory allow --draft iq.json --id iq-internal --from-country iq --to-country iq
for cc in iq fr; do
  isnad directory allow --draft $cc.json --id $cc-mla-ca --from-role central-authority --to-role central-authority \
    --kind mla-request --kind mla-status
done
isnad directory sign --root-key iq-root/root.key.pem --draft iq.json --version 1 --out iq.cose
isnad directory sign --root-key fr-root/root.key.pem --draft fr.json --version 1 --out fr.cose
for n in iq-moi iq-moj fr-mj; do
  case $n in iq-*) own=IQ; other=FR ;; *) own=FR; other=IQ ;; esac
  lo=$(echo $own | tr A-Z a-z); lp=$(echo $other | tr A-Z a-z)
  isnad trust init --trust-dir "$NODES"/$n/trust --country $own --root $lo-root/root.pub.cose
  isnad trust add-partner --trust-dir "$NODES"/$n/trust --country $other --root $lp-root/root.pub.cose
  isnad trust import --trust-dir "$NODES"/$n/trust iq.cose
  isnad trust import --trust-dir "$NODES"/$n/trust fr.cose
done
echo "federation set up"
