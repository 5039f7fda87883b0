package hpa

import (
	"strconv"
	"strings"
	"time"
)

// RecommendationsAnnotation keeps an HPA's recent recommendations for the
// stabilisation windows. Kubernetes keeps them in the controller's memory;
// a Wasm controller's instances share none, so Tugboat keeps them on the
// object, run-length encoded: "<unix seconds>:<replicas>,..." — each
// recommendation holds from its time until the next one's, so the
// annotation changes only when the recommendation does.
const RecommendationsAnnotation = "autoscaling.tugboat.dev/recommendations"

// recommendation is a run of one recommended replica count since at.
type recommendation struct {
	at       int64
	replicas int64
}

func parseRecommendations(s string) []recommendation {
	var out []recommendation
	for part := range strings.SplitSeq(s, ",") {
		a, b, ok := strings.Cut(part, ":")
		if !ok {
			continue
		}
		at, err1 := strconv.ParseInt(a, 10, 64)
		n, err2 := strconv.ParseInt(b, 10, 64)
		if err1 == nil && err2 == nil {
			out = append(out, recommendation{at, n})
		}
	}
	return out
}

func formatRecommendations(recs []recommendation) string {
	var b []byte
	for i, r := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, r.at, 10)
		b = append(b, ':')
		b = strconv.AppendInt(b, r.replicas, 10)
	}
	return string(b)
}

// stabilize is Kubernetes' stabilizeRecommendationWithBehaviors: scaling
// up goes at most to the lowest recommendation of the scale-up window,
// scaling down at most to the highest of the scale-down window. It
// returns the stabilised count and the recommendation runs to keep
// (desired recorded, runs older than both windows dropped).
func stabilize(recs []recommendation, current, desired int64, now time.Time, upWindow, downWindow time.Duration) (int64, []recommendation) {
	nowS := now.Unix()
	if len(recs) == 0 || recs[len(recs)-1].replicas != desired {
		recs = append(recs, recommendation{nowS, desired})
	}
	up, down := desired, desired
	upCut, downCut := nowS-int64(upWindow/time.Second), nowS-int64(downWindow/time.Second)
	keepFrom := len(recs) - 1
	for i, r := range recs {
		end := nowS + 1 // the last run lasts until now
		if i+1 < len(recs) {
			end = recs[i+1].at
		}
		if end > upCut && upWindow > 0 {
			up = min(up, r.replicas)
		}
		if end > downCut && downWindow > 0 {
			down = max(down, r.replicas)
		}
		if (end > upCut || end > downCut) && i < keepFrom {
			keepFrom = i
		}
	}
	out := current
	if out < up {
		out = up
	}
	if out > down {
		out = down
	}
	return out, recs[keepFrom:]
}
