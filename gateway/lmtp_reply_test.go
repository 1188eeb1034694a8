package gateway

import (
	"errors"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestBackendRepliesKeepTheirEnhancedCodes(t *testing.T) {
	tests := []struct {
		name string
		in   *smtp.SMTPError
		want smtp.SMTPError
	}{
		{"code on the last line (Cyrus)",
			&smtp.SMTPError{Code: 550, Message: "Mailbox unknown.\nname or you...\n5.1.1 User unknown"},
			smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Mailbox unknown.\nname or you...\nUser unknown"}},
		{"code already parsed",
			&smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Over quota"},
			smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Over quota"}},
		{"class mismatch is left alone",
			&smtp.SMTPError{Code: 451, Message: "5.1.1 odd"},
			smtp.SMTPError{Code: 451, Message: "5.1.1 odd"}},
		{"no code at all",
			&smtp.SMTPError{Code: 451, Message: "try later"},
			smtp.SMTPError{Code: 451, Message: "try later"}},
	}
	for _, tc := range tests {
		if got := backendReply(tc.in); *got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, *got, tc.want)
		}
	}
	var se *smtp.SMTPError
	if !errors.As(successReply("2.1.5 Ok SESSIONID=<x>"), &se) || se.Code != 250 || se.EnhancedCode != (smtp.EnhancedCode{2, 1, 5}) || se.Message != "Ok SESSIONID=<x>" {
		t.Errorf("successReply: %+v", se)
	}
	if !errors.As(successReply("queued"), &se) || se.EnhancedCode != (smtp.EnhancedCode{2, 0, 0}) || se.Message != "queued" {
		t.Errorf("successReply without code: %+v", se)
	}
}
