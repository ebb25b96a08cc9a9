# The `helm test` pod's script (templates/tests/test-replicas.yaml), for busybox sh and wget.
# Environment: REPLICAS (the replica count), STATEFULSET (the pods' name prefix), HEADLESS
# (the governing Service: each pod is $STATEFULSET-N.$HEADLESS), SERVICE (host:port of the
# client Service), and READY_SECONDS (how long a replica may take to get ready; 30 when
# unset). Exits 0 when every replica is ready and a visit through the Service is
# recorded; otherwise names every replica and request that failed, and exits 1.
# Each request is bounded by `timeout` (wget's own -T is not in every busybox).
set -u
failed=0
ready_seconds=${READY_SECONDS:-30}

# A replica that is restarting gets READY_SECONDS to come back, no more: the check must
# end well within `helm test`'s own timeout, and a replica that stays unready is a failure.
ready() {
    deadline=$(($(date +%s) + ready_seconds))
    while :; do
        if answer=$(timeout 2 wget -q -O - "http://$1:8080/readyz" 2>&1); then
            echo "ok: $1 /readyz: $answer"
            return 0
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "FAILED: $1 /readyz did not answer 200 within $ready_seconds s: ${answer:-no answer}"
            return 1
        fi
        sleep 1
    done
}

if [ "$REPLICAS" -eq 0 ]; then
    echo "FAILED: replicaCount is 0: no replica runs, so nothing can answer"
    exit 1
fi

i=0
while [ "$i" -lt "$REPLICAS" ]; do
    ready "$STATEFULSET-$i.$HEADLESS" || failed=1
    i=$((i + 1))
done

# GET / records one visit on whichever ready replica the Service picks, and answers 200
# only once that visit is on disk.
if answer=$(timeout 5 wget -q -O - "http://$SERVICE/" 2>&1); then
    echo "ok: GET http://$SERVICE/ recorded a visit: $(echo "$answer" | head -n 1)"
else
    echo "FAILED: GET http://$SERVICE/: $answer"
    failed=1
fi

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "all $REPLICAS replicas ready; a visit through $SERVICE recorded"
