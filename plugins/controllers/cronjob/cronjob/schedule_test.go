package cronjob_test

import (
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/plugins/controllers/cronjob/cronjob"
)

func TestScheduleNext(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		spec, from string
		want       []string
	}{
		{"* * * * *", "2026-01-01T00:00:30Z", []string{"2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"}},
		{"*/15 * * * *", "2026-01-01T00:14:00Z", []string{"2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z"}},
		{"5-10/5,59 2 * * *", "2026-01-01T00:00:00Z", []string{"2026-01-01T02:05:00Z", "2026-01-01T02:10:00Z", "2026-01-01T02:59:00Z", "2026-01-02T02:05:00Z"}},
		{"@hourly", "2026-01-01T10:00:00Z", []string{"2026-01-01T11:00:00Z"}},
		{"@daily", "2026-01-01T10:00:00Z", []string{"2026-01-02T00:00:00Z"}},
		{"@midnight", "2026-01-01T10:00:00Z", []string{"2026-01-02T00:00:00Z"}},
		{"@weekly", "2026-01-01T10:00:00Z", []string{"2026-01-04T00:00:00Z"}}, // 2026-01-04 is a Sunday
		{"@monthly", "2026-01-15T10:00:00Z", []string{"2026-02-01T00:00:00Z"}},
		{"@yearly", "2026-01-15T10:00:00Z", []string{"2027-01-01T00:00:00Z"}},
		{"@annually", "2026-01-15T10:00:00Z", []string{"2027-01-01T00:00:00Z"}},
		{"@every 90s", "2026-01-01T00:00:00Z", []string{"2026-01-01T00:01:30Z", "2026-01-01T00:03:00Z"}},
		{"0 9 * JAN-FEB MON-FRI", "2026-01-02T10:00:00Z", []string{"2026-01-05T09:00:00Z"}}, // Fri 10:00 -> Mon
		{"0 0 * * 7", "2026-01-01T00:00:00Z", []string{"2026-01-04T00:00:00Z"}},             // 7 is Sunday
		// Both day fields restricted: either matches (the 13th, or a Friday).
		{"0 0 13 * 5", "2026-01-01T00:00:00Z", []string{"2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z"}},
		{"0 0 29 2 ?", "2026-01-01T00:00:00Z", []string{"2028-02-29T00:00:00Z"}},
		{"0 0 30 2 *", "2026-01-01T00:00:00Z", []string{"0001-01-01T00:00:00Z"}}, // never
	} {
		t.Run(tc.spec, func(t *testing.T) {
			s, err := cronjob.ParseSchedule(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			cur := at(tc.from)
			for _, w := range tc.want {
				cur = s.Next(cur)
				if !cur.Equal(at(w)) {
					t.Fatalf("next %v, want %s", cur, w)
				}
			}
		})
	}
}

func TestScheduleTimeZone(t *testing.T) {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	s, err := cronjob.ParseSchedule("30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	// 2026-03-08 is the DST start in New York: 02:30 does not exist that
	// day; the next activation is the day after.
	next := s.Next(time.Date(2026, 3, 7, 12, 0, 0, 0, loc))
	if want := time.Date(2026, 3, 9, 2, 30, 0, 0, loc); !next.Equal(want) {
		t.Errorf("next %v, want %v", next, want)
	}
	s, _ = cronjob.ParseSchedule("0 9 * * *")
	next = s.Next(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).In(loc))
	if want := time.Date(2026, 6, 1, 13, 0, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("09:00 New York is %v, want %v", next.UTC(), want)
	}
}

func TestScheduleInvalid(t *testing.T) {
	for _, spec := range []string{"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
		"* * * * 8", "*/0 * * * *", "5-1 * * * *", "x * * * *", "@every 0s", "@every soon", "@often"} {
		if _, err := cronjob.ParseSchedule(spec); err == nil {
			t.Errorf("%q parsed", spec)
		}
	}
}
