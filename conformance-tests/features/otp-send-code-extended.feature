Feature: otp-gateway extensions to the CAMARA One Time Password SMS v1.1.0 tests - operation sendCode
  # What the official files leave out: scope, rate limit, x-correlator, methods, media types,
  # unknown properties. Written for camara-conformance; any implementation can run it.

  Background: Common sendCode setup
    Given an environment at "apiRoot"
    And the resource "/one-time-password-sms/v1/send-code"
    And the header "Content-Type" is set to "application/json"
    And the header "Authorization" is set to a valid access token
    And the header "x-correlator" is set to a UUID value
    And the request body is set by default to a request body compliant with the schema

  @otp_ext_send_code_403_permission_denied
  Scenario: A token without the scope is refused with PERMISSION_DENIED
    Given the header "Authorization" is set to a valid access token without the required scope
    When the HTTP "POST" request is sent
    Then the response status code is 403
    And the response property "$.status" is 403
    And the response property "$.code" is "PERMISSION_DENIED"
    And the response property "$.message" contains a user friendly text
    And the response header "x-correlator" has same value as the request header "x-correlator"

  @otp_ext_send_code_429_too_many_requests
  Scenario: A client over its request rate gets TOO_MANY_REQUESTS
    Given the header "Authorization" is set to a valid access token of client "rate-limited"
    When 6 requests are sent in quick succession
    Then at least one of the responses has status 429 and property "$.code" "TOO_MANY_REQUESTS"

  @otp_ext_send_code_400_invalid_x_correlator
  Scenario: An x-correlator outside the pattern is an invalid argument
    # Outside the pattern of v1.1.0 and of v1.1.1 (neither allows "@" or "#").
    Given the header "x-correlator" is set to "not@a#valid-correlator"
    When the HTTP "POST" request is sent
    Then the response status code is 400
    And the response property "$.code" is "INVALID_ARGUMENT"
    And the response property "$.message" contains a user friendly text

  @otp_ext_send_code_200_without_x_correlator
  Scenario: Without x-correlator the request succeeds and the response still carries one
    Given the header "x-correlator" is removed
    When the HTTP "POST" request is sent
    Then the response status code is 200
    And the response header "x-correlator" exists
    And the response header "Content-Type" is "application/json"

  @otp_ext_send_code_405_method_not_allowed
  Scenario: Another method on the resource is METHOD_NOT_ALLOWED
    When the HTTP "GET" request is sent
    Then the response status code is 405
    And the response property "$.code" is "METHOD_NOT_ALLOWED"
    And the response header "Content-Type" is "application/json"
    And the response header "x-correlator" has same value as the request header "x-correlator"

  @otp_ext_send_code_415_unsupported_media_type
  Scenario: A body that is not JSON is UNSUPPORTED_MEDIA_TYPE
    Given the header "Content-Type" is set to "text/plain"
    When the HTTP "POST" request is sent
    Then the response status code is 415
    And the response property "$.code" is "UNSUPPORTED_MEDIA_TYPE"
    And the response header "Content-Type" is "application/json"

  @otp_ext_send_code_200_unknown_properties
  Scenario: Unknown properties are ignored in v1.1.0
    Given the request body property "$.unknownProperty" is set to "ignored"
    When the HTTP "POST" request is sent
    Then the response status code is 200
    And the response body complies with the OAS schema at "/components/schemas/SendCodeResponse"

  @otp_ext_send_code_phone_number_e164_outline
  Scenario Outline: Only an E.164 phoneNumber is accepted (<case>)
    Given the request body is set to:
      """
      {"phoneNumber": "<phone>", "message": "{{code}} is your verification code"}
      """
    When the HTTP "POST" request is sent
    Then the response status code is <status>
    And the response header "x-correlator" has same value as the request header "x-correlator"

    Examples:
      | case         | phone             | status |
      | E.164        | +34600000099      | 200    |
      | no plus      | 34600000001       | 400    |
      | leading zero | +034600000001     | 400    |
      | too long     | +3460000000112345 | 400    |
      | too short    | +3460             | 400    |

  @otp_ext_send_code_400_malformed_json
  Scenario: A malformed JSON body is an invalid argument
    Given the request body is set to "{\"phoneNumber\": "
    When the HTTP "POST" request is sent
    Then the response status code is 400
    And the response property "$.code" is "INVALID_ARGUMENT"
